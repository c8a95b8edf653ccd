"""The exporter policy's rules, one per test: per-event outcomes in, one ExportResult out."""

from __future__ import annotations

from evlog.exporters import Batch, EventRejected, ExportOutcomes, ExportResult, ExportStatus
from evlog.exporters.http import HttpOutcome
from support.events import make_event

A, B, C = make_event("a"), make_event("b"), make_event("c")


def outcomes() -> ExportOutcomes:
    return ExportOutcomes(Batch((A, B, C)), label="acme")


def test_all_accepted_is_success_with_details() -> None:
    o = outcomes()
    o.accept_rest()
    assert o.result(details={"k": 1}) == ExportResult.success(details={"k": 1})


def test_all_retried_is_retry_with_the_longest_retry_after() -> None:
    o = outcomes()
    o.retry([A], "busy", after=2)
    o.retry([B, C], "busier", after=5)
    assert o.result() == ExportResult.retry("busy", after=5)


def test_all_refused_with_their_request_is_failure() -> None:
    o = outcomes()
    o.refuse([A, B, C], "HTTP 401: bad key")
    assert o.result() == ExportResult.failure("HTTP 401: bad key")


def test_refusals_of_single_events_stay_partial_even_when_nothing_else_happened() -> None:
    o = outcomes()
    for event in (A, B, C):
        o.reject(event, "too long")
    result = o.result()
    assert result.status is ExportStatus.PARTIAL
    assert set(result.rejected) == {A.event_id, B.event_id, C.event_id}


def test_a_mix_is_partial_with_rejected_and_retry_ids() -> None:
    o = outcomes()
    o.accept([A])
    o.refuse([B], "HTTP 400")
    o.retry([C], "HTTP 503", after=3)
    result = o.result()
    assert result.status is ExportStatus.PARTIAL
    assert (result.rejected, result.retry_ids, result.retry_after) == ({B.event_id: "HTTP 400"}, {C.event_id}, 3)


def test_an_event_without_an_outcome_is_retried_never_counted_as_sent() -> None:
    o = outcomes()
    o.accept([A, B])
    result = o.result()
    assert (result.status, result.retry_ids) == (ExportStatus.PARTIAL, {C.event_id})


def test_the_last_outcome_recorded_wins() -> None:
    o = outcomes()
    o.retry([A, B, C], "session gone")
    o.accept([A, B, C])
    assert o.result().ok


def test_prepare_rejects_only_the_events_that_raise_event_rejected() -> None:
    def encode(event: object) -> str:
        if event is B:
            raise EventRejected("name too long")
        return "ok"

    o = outcomes()
    assert o.prepare([A, B, C], encode) == [(A, "ok"), (C, "ok")]
    o.accept([A, C])
    assert o.result().rejected == {B.event_id: "acme: name too long"}


def test_record_files_http_answers_by_the_shared_rules() -> None:
    o = outcomes()
    o.record([A], HttpOutcome(400, b"bad field"), one_event=True)  # about this event's content
    o.record([B], HttpOutcome(401, b"bad key"), one_event=True)  # about the request, whatever it held
    o.record([C], HttpOutcome(429, headers={"Retry-After": "4"}))
    result = o.result()
    assert result.rejected == {A.event_id: "HTTP 400: bad field", B.event_id: "HTTP 401: bad key"}
    assert (result.retry_ids, result.retry_after) == ({C.event_id}, 4)
