"""The exporter policy: per-event outcomes in, one ``ExportResult`` out, by one rule set for every exporter.

Before this module each exporter wrote its own version of "what does this batch's fate amount to" and they
disagreed (one exporter called a batch refused event by event a failure, another only on 401/403...). Now an
exporter records what happened to each event and ``ExportOutcomes.result()`` decides, the same way for all:

Each event ends with exactly one outcome (the last one recorded wins, so an event re-sent after a recoverable
problem takes its new outcome):

- **accepted**: the backend took it.
- **rejected**: refused for good, for a reason that concerns this event alone (it breaks a rule of the backend,
  found before sending by raising ``evlog.EventRejected`` from the per-event mapping, or the backend's
  answer to a request that carried this event alone, e.g. a 400 for its content).
- **refused**: the backend refused the whole request it was in, for a reason that holds for any event
  (401/403, a malformed request, a 2xx that says ``success: false``, a terminal error for the call).
- **retry**: not delivered for a transient reason (no answer, a status in ``RETRYABLE_STATUSES``, the
  deadline came first); the largest ``Retry-After`` asked for is passed on.

An event for which nothing was recorded is handed back for a retry: a bug in an exporter must never count an
event as sent. The result:

1. every event accepted: ``SUCCESS`` (with ``details``);
2. every event to retry: ``RETRY`` (message: the first retry reason);
3. every event refused at request level: ``FAILURE`` (message: the first refusal); the whole batch met a
   problem that no retry and no other event could change, which is what the pipeline reports as ``failed``;
4. anything else: ``PARTIAL``: ``rejected`` maps each rejected or refused event to its reason, ``retry_ids``
   names the events to try again, the rest were accepted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from evlog._event import Event
from evlog._serialize import encode_each, encode_wires, map_each
from evlog.exporters._base import Batch, ExportResult, ExportStatus

if TYPE_CHECKING:  # the module stays importable without loading the HTTP layer
    from evlog.exporters.http import HttpOutcome

__all__ = ["REQUEST_LEVEL_STATUSES", "ExportOutcomes"]

T = TypeVar("T")

#: 4xx statuses about the request rather than its content (credentials, a wrong URL or method): whatever the
#: request held, any other would fare the same.
REQUEST_LEVEL_STATUSES = frozenset({401, 403, 404, 405, 407, 410})
#: How much of the joined reasons a partial result's message keeps.
_MESSAGE_LIMIT = 500


def _about_content(status: int | None) -> bool:
    return status is not None and 400 <= status < 500 and status not in REQUEST_LEVEL_STATUSES


class _Fate(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REFUSED = "refused"
    RETRY = "retry"


class ExportOutcomes:
    """Collects what happened to each event of ``batch``; ``result()`` applies the rules above.

    ``label`` (e.g. ``"statsig"``) prefixes the reasons of events refused before sending, so a drop says which
    exporter refused it.
    """

    def __init__(self, batch: Batch | Iterable[Event], *, label: str = "") -> None:
        events = batch.events if isinstance(batch, Batch) else tuple(batch)
        self._events: tuple[Event, ...] = events
        self._label = label
        self._fates: dict[str, tuple[_Fate, str]] = {}
        self._retry_after: float | None = None

    # --- recording -----------------------------------------------------------------------------------

    def _set(self, events: Iterable[Event], fate: _Fate, reason: str) -> None:
        for event in events:
            self._fates[event.event_id] = (fate, reason)

    def accept(self, events: Iterable[Event]) -> None:
        self._set(events, _Fate.ACCEPTED, "")

    def accept_rest(self) -> None:
        """Every event without an outcome yet was accepted (an exporter that hands the batch off whole)."""
        self.accept(e for e in self._events if e.event_id not in self._fates)

    def reject(self, event: Event, reason: str) -> None:
        """Refused for good, for a reason that is this event's own."""
        self._set((event,), _Fate.REJECTED, reason)

    def refuse(self, events: Iterable[Event], reason: str) -> None:
        """The backend refused the request that carried ``events``, for a reason that holds for all of it."""
        self._set(events, _Fate.REFUSED, reason)

    def retry(self, events: Iterable[Event], reason: str, *, after: float | None = None) -> None:
        self._set(events, _Fate.RETRY, reason)
        if after is not None:
            self._retry_after = max(self._retry_after or 0.0, after)

    def prepare(self, events: Iterable[Event], encode: Callable[[Event], T]) -> list[tuple[Event, T]]:
        """``(event, encode(event))`` for each event ``encode`` accepts; ``EventRejected`` (a backend's rule) or
        any other exception (an odd value) rejects that one alone, with the reason."""
        return map_each(events, encode, self._reject_labelled)

    def encode(self, events: Iterable[Event], to_wire: Callable[[Event], Any]) -> list[tuple[Event, bytes]]:
        """``(event, JSON bytes of to_wire(event))``, each event in its own guard (``_serialize.encode_each``):
        one whose mapping or encoding fails is rejected alone, with the reason and the field path."""
        return encode_each(events, to_wire, self._reject_labelled)

    def encode_mapped(self, pairs: Iterable[tuple[Event, Any]]) -> list[tuple[Event, bytes]]:
        """Like ``encode`` for ``(event, wire form)`` pairs already mapped (by ``prepare``)."""
        return encode_wires(pairs, self._reject_labelled)

    def _reject_labelled(self, event: Event, reason: str) -> None:
        self.reject(event, f"{self._label}: {reason}" if self._label else reason)

    def record(
        self,
        events: Iterable[Event],
        outcome: HttpOutcome,
        *,
        reason: str | None = None,
        one_event: bool = False,
    ) -> None:
        """The HTTP answer to a request that carried ``events``; ``reason`` defaults to ``outcome.describe()``.

        2xx accepts them; a retryable outcome retries them with its Retry-After. Any other answer refuses the
        request, except a 4xx outside ``REQUEST_LEVEL_STATUSES`` when ``one_event`` says the request carried a
        single event (an API with one request per event): that answer is about the event's content and
        rejects it alone.
        """
        if outcome.ok:
            self.accept(events)
            return
        text = reason if reason is not None else outcome.describe()
        if outcome.retryable:
            self.retry(events, text, after=outcome.retry_after)
        elif one_event and _about_content(outcome.status):
            for event in events:
                self.reject(event, text)
        else:
            self.refuse(events, text)

    def merge(self, events: Iterable[Event], result: ExportResult) -> None:
        """Take a result built for ``events`` alone (e.g. one request's verdict) into this batch's outcomes."""
        events = tuple(events)
        if result.status is ExportStatus.SUCCESS:
            self.accept(events)
        elif result.status is ExportStatus.FAILURE:
            self.refuse(events, result.message)
        elif result.status is ExportStatus.RETRY:
            ids = result.retry_ids
            self.accept(e for e in events if ids is not None and e.event_id not in ids)
            self.retry(
                (e for e in events if ids is None or e.event_id in ids), result.message, after=result.retry_after
            )
        else:
            ids = result.retry_ids or frozenset()
            for event in events:
                if event.event_id in result.rejected:
                    self.reject(event, result.rejected[event.event_id])
                elif event.event_id in ids:
                    self.retry((event,), result.message, after=result.retry_after)
                else:
                    self.accept((event,))

    # --- the verdict ---------------------------------------------------------------------------------

    def result(self, *, details: Mapping[str, Any] | None = None) -> ExportResult:
        fates = [
            self._fates.get(e.event_id, (_Fate.RETRY, "no outcome was recorded for this event")) for e in self._events
        ]
        kinds = {fate for fate, _ in fates}
        reasons = list(dict.fromkeys(reason for fate, reason in fates if fate is not _Fate.ACCEPTED))
        if kinds <= {_Fate.ACCEPTED}:
            return ExportResult.success(details=details)
        if kinds == {_Fate.RETRY}:
            return ExportResult.retry(reasons[0], after=self._retry_after)
        if kinds == {_Fate.REFUSED}:
            return ExportResult.failure(reasons[0])
        rejected: dict[str, str] = {}
        retry: list[Event] = []
        for event, (fate, reason) in zip(self._events, fates, strict=True):
            if fate in (_Fate.REJECTED, _Fate.REFUSED):
                rejected[event.event_id] = reason
            elif fate is _Fate.RETRY:
                retry.append(event)
        return ExportResult.partial(
            rejected,
            retry=retry,
            retry_after=self._retry_after if retry else None,
            message="; ".join(reasons)[:_MESSAGE_LIMIT],
            details=details,
        )
