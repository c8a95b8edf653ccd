"""Every built-in exporter held to the same contract: the same situation gives the same ``ExportResult``.

Each case runs against the exporter's loopback fake over real HTTP (``support.backends``); a case that cannot
happen to an exporter (a local file has no 429) is skipped for it, never answered differently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evlog import Batch, ExportResult, ExportStatus
from evlog.exporters import Exporter
from support.backends import HTTP_NAMES, NAMES, Backend, open_backend
from support.loopback import Fault, Reply


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with open_backend(request.param, tmp=tmp_path) as opened:
        yield opened


@pytest.fixture(params=HTTP_NAMES)
def http_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with open_backend(request.param) as opened:
        yield opened


def warmed(backend: Backend) -> Exporter:
    """An exporter that has already delivered once (sessions opened), so scripted answers hit the events."""
    exporter = backend.build()
    assert exporter.export(Batch((backend.good(),))).ok
    return exporter


def export_after(backend: Backend, *answers: Reply | Fault) -> tuple[Batch, ExportResult]:
    """Two good events, each request answered with ``answers`` (repeated for per-event requests)."""
    assert backend.server is not None
    exporter = warmed(backend)
    batch = Batch((backend.good("first"), backend.good("second")))
    backend.server.script(*(answers * (len(batch) if backend.per_event_requests else 1)))
    return batch, exporter.export(batch)


def test_success(backend: Backend) -> None:
    result = backend.build().export(Batch((backend.good("first"), backend.good("second"))))
    assert result.status is ExportStatus.SUCCESS
    assert (result.rejected, result.retry_ids) == ({}, None)


def test_an_empty_batch_is_a_success(backend: Backend) -> None:
    assert backend.build().export(Batch(())).status is ExportStatus.SUCCESS


def test_429_is_retried_after_retry_after(http_backend: Backend) -> None:
    _batch, result = export_after(http_backend, Reply(429, {"message": "slow down"}, headers={"Retry-After": "2"}))
    assert result.status is ExportStatus.RETRY
    assert (result.retry_after, result.retry_ids, result.rejected) == (2.0, None, {})


@pytest.mark.parametrize("answer", [Reply(503, "overloaded"), Reply(500, "oops"), Fault.RESET], ids=str)
def test_transient_trouble_is_retried(http_backend: Backend, answer: Reply | Fault) -> None:
    _batch, result = export_after(http_backend, answer)
    assert result.status is ExportStatus.RETRY
    assert (result.retry_ids, result.rejected) == (None, {})


@pytest.mark.parametrize("status", [501, 505])
def test_statuses_that_waiting_will_not_change_are_not_retried(http_backend: Backend, status: int) -> None:
    _batch, result = export_after(http_backend, Reply(status, "not here"))
    assert result.status is ExportStatus.FAILURE
    assert (result.rejected, result.retry_ids) == ({}, None)


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_fail_the_whole_batch(http_backend: Backend, status: int) -> None:
    _batch, result = export_after(http_backend, Reply(status, {"message": "bad credentials"}))
    assert result.status is ExportStatus.FAILURE
    assert f"{status}" in result.message
    assert (result.rejected, result.retry_ids) == ({}, None)


def test_an_event_the_backend_refuses_is_rejected_alone(http_backend: Backend) -> None:
    if http_backend.refuse is None:
        pytest.skip(f"{http_backend.name}'s backend answers for a whole request, never for one event")
    good, bad = http_backend.good("accepted"), http_backend.good("refused")
    http_backend.refuse(bad)
    result = http_backend.build().export(Batch((good, bad)))
    assert result.status is ExportStatus.PARTIAL
    assert set(result.rejected) == {bad.event_id}
    assert result.retry_ids is None


def test_an_event_refused_before_sending_costs_no_other_event(backend: Backend) -> None:
    if backend.invalid is None:
        pytest.skip(f"{backend.name} accepts every event")
    good, bad = backend.good("accepted"), backend.invalid()
    result = backend.build().export(Batch((good, bad)))
    assert result.status is ExportStatus.PARTIAL
    assert set(result.rejected) == {bad.event_id}
    assert result.rejected[bad.event_id]
    assert result.retry_ids is None
    if backend.server is not None:
        assert not any(bad.name.encode() in r.body for r in backend.server.requests)


def test_only_refused_events_is_partial_not_failure(backend: Backend) -> None:
    """Per-event refusals stay PARTIAL even when they are all there is: no request was refused."""
    if backend.invalid is None:
        pytest.skip(f"{backend.name} accepts every event")
    result = backend.build().export(Batch((backend.invalid(),)))
    assert result.status is ExportStatus.PARTIAL
    if backend.server is not None:
        assert backend.server.requests == []
