"""Delivering one batch through one exporter: the attempts, the waits between them, what each result means.

The pipeline hands over one batch at a time; this runs it to its end. A retry wait is planned against the
batch's own deadline and shutdown's (``_retry.plan_retry``), and re-planned whenever shutdown begins or a flush
arrives (the ``replan`` event), so shutdown and flush hurry a retry instead of abandoning it. What is lost is
counted here, once: a batch the pipeline abandoned at its shutdown deadline is counted by the pipeline, and
whatever this learns about it afterwards is no longer counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from evlog._accounting import DropReason, Reporter
from evlog._event import Event
from evlog._guard import guarded
from evlog._retry import RetryPolicy, plan_retry
from evlog.exporters._base import Batch, Exporter, ExportResult, ExportStatus

__all__ = ["Delivery", "Tally"]

#: Request deadline of a batch when ``retry_deadline`` is 0 (no retries): the exporter still needs a bound.
_NO_RETRY_REQUEST_SECONDS = 30.0


@attrs.define
class Tally:
    """What one ``ExportResult`` means for each event of its batch."""

    sent: int = 0
    failed: list[Event] = attrs.Factory(list)
    rejected: dict[str, list[Event]] = attrs.Factory(dict)
    retry: list[Event] = attrs.Factory(list)

    @classmethod
    def of(cls, events: Sequence[Event], result: ExportResult) -> Tally:
        status = result.status
        if status is ExportStatus.SUCCESS:
            return cls(sent=len(events))
        if status is ExportStatus.FAILURE:
            return cls(failed=list(events))
        tally = cls()
        retry_ids = result.retry_ids
        all_retry = status is ExportStatus.RETRY and retry_ids is None
        for event in events:
            reason = result.rejected.get(event.event_id)
            if reason is not None:
                tally.rejected.setdefault(reason, []).append(event)
            elif all_retry or (retry_ids is not None and event.event_id in retry_ids):
                tally.retry.append(event)
            else:
                tally.sent += 1
        return tally


class Delivery:
    def __init__(
        self,
        exporter: Exporter,
        *,
        name: str,
        policy: RetryPolicy,
        reporter: Reporter,
        lock: threading.Lock,
        abandoned: Callable[[], bool],
        shutdown_deadline: Callable[[], float | None],
        flush_deadline: Callable[[float], float | None],
        replan: threading.Event,
        settled: Callable[[Sequence[Event]], None],
    ) -> None:
        self.exporter = exporter
        self.name = name
        self.policy = policy
        self.reporter = reporter
        #: The pipeline's lock: results and shutdown's abandonment are decided under it, one or the other.
        self._lock = lock
        self._abandoned = abandoned
        self._shutdown_deadline = shutdown_deadline
        self._flush_deadline = flush_deadline
        #: Set to make a waiting attempt plan again (shutdown began, or a flush is waiting).
        self._replan = replan
        #: Told of events this exporter is done with: delivered, or given up on for good (the spool drops them).
        self._settled = settled
        #: Told of every result (the ``debug`` option logs them); must not raise.
        self.on_result: Callable[[str, Batch, ExportResult], None] | None = None
        #: The batch being exported or waiting to be retried (what shutdown counts if it abandons it).
        self.in_flight: Batch | None = None
        #: True while ``export`` runs: a batch abandoned then has an unknown outcome, not a known loss.
        self.exporting = False
        self.sent = 0
        self.retried = 0
        self.unknown = 0
        #: Events this delivery counted as lost (see ``FlushMarker``).
        self.lost = 0
        self.details: dict[str, Any] = {}

    def request_deadline(self, first_attempt: float, now: float) -> float:
        """A batch's requests must end by its retry deadline, counted from its first attempt, and by shutdown's."""
        retries = self.policy.deadline > 0
        deadline = first_attempt + self.policy.deadline if retries else now + _NO_RETRY_REQUEST_SECONDS
        shutdown = self._shutdown_deadline()
        if shutdown is not None:
            deadline = min(deadline, shutdown)
        return deadline

    def deliver(self, batch: Batch, first_attempt: float) -> None:
        """Attempt ``batch`` until every event is delivered or given up on (counted)."""
        attempt = 0
        final = False
        while True:
            result = self._export(batch)
            if result is None:
                return
            retry = self._account(batch, result)
            if not retry:
                return
            detail = result.message or "transient failure"
            plan = self._next_wait(attempt, result.retry_after, first_attempt, final)
            if plan is not None:
                with self._lock:
                    if self._abandoned():  # shutdown gave up on it meanwhile, and counted it
                        return
                    self.retried += len(retry)
                    batch = batch.retry(retry, deadline=self.request_deadline(first_attempt, time.monotonic()))
                    self.in_flight = batch
                plan = self._wait_for_retry(plan, attempt, result.retry_after, first_attempt)
            if plan is None:
                if self._settle():
                    reason, why = self._why_given_up(attempt, first_attempt, detail)
                    self.count_drop(reason, why, retry)
                    if reason is not DropReason.SHUTDOWN:  # at shutdown, the spool keeps them for the next process
                        self._settled(retry)
                return
            final = plan[1]
            attempt += 1

    def _export(self, batch: Batch) -> ExportResult | None:
        """One ``export`` call; None when it raised (counted here) or shutdown abandoned the batch meanwhile."""
        self.exporting = True
        try:
            with guarded():
                result = self.exporter.export(batch)
            if not isinstance(result, ExportResult):
                raise TypeError(f"export() returned {type(result).__name__}, not an ExportResult")
        except Exception as exc:
            self.exporting = False
            if self._settle():
                self.reporter.warn(
                    "export_error", f"exporter {self.name!r} raised in export()", exporter=self.name, exc_info=True
                )
                self.count_drop(DropReason.EXPORT_ERROR, f"{type(exc).__name__}: {exc}", batch.events)
                self._settled(batch.events)
            return None
        self.exporting = False
        if self.on_result is not None:
            self.on_result(self.name, batch, result)
        return result

    def _next_wait(
        self, attempt: int, requested: float | None, first_attempt: float, final: bool
    ) -> tuple[float, bool] | None:
        now = time.monotonic()
        return plan_retry(
            self.policy,
            attempt=attempt,
            requested=requested,
            first_attempt=first_attempt,
            now=now,
            shutdown_deadline=self._shutdown_deadline(),
            flush_deadline=self._flush_deadline(now),
            final=final,
        )

    def _wait_for_retry(
        self, plan: tuple[float, bool], attempt: int, requested: float | None, first_attempt: float
    ) -> tuple[float, bool] | None:
        """Wait as planned, planning again whenever shutdown begins or a flush arrives; None: give up.

        Returns the plan that was followed (whether the attempt after it is the final one).
        """
        until = time.monotonic() + plan[0]
        while True:
            left = until - time.monotonic()
            if left <= 0 or not self._replan.wait(left):
                return plan
            self._replan.clear()
            new = self._next_wait(attempt, requested, first_attempt, final=False)
            if new is None:
                return None
            if time.monotonic() + new[0] < until:
                until = time.monotonic() + new[0]
                plan = new

    def _why_given_up(self, attempt: int, first_attempt: float, detail: str) -> tuple[DropReason, str]:
        shutdown = self._shutdown_deadline()
        if shutdown is not None and (self.policy.deadline <= 0 or shutdown < first_attempt + self.policy.deadline):
            return DropReason.SHUTDOWN, f"the shutdown deadline came before the backend recovered: {detail}"
        return (
            DropReason.RETRIES_EXHAUSTED,
            f"still failing after {attempt + 1} attempt(s) (retry_deadline {self.policy.deadline:g}s): {detail}",
        )

    def _settle(self) -> bool:
        """Take the batch out of flight; False when shutdown abandoned it (and so already counted it)."""
        with self._lock:
            if self._abandoned():
                return False
            self.in_flight = None
            return True

    def count_drop(self, reason: DropReason, detail: str, events: Sequence[Event], *, quiet: bool = False) -> None:
        if reason is DropReason.OUTCOME_UNKNOWN:
            self.unknown += len(events)
        else:
            self.lost += len(events)
        self.reporter.drop(reason, len(events), exporter=self.name, events=tuple(events), detail=detail, quiet=quiet)

    def _account(self, batch: Batch, result: ExportResult) -> list[Event]:
        """Count a result; the events to retry (empty when done). The batch stays in flight while retried."""
        tally = Tally.of(batch.events, result)
        with self._lock:
            if self._abandoned():
                return []
            if result.details:
                self.details.update(result.details)
            self.sent += tally.sent
            if not tally.retry:
                self.in_flight = None
        if tally.failed:
            quiet = self.exporter.optional  # e.g. no viewer running: counted, not worth a warning
            self.count_drop(DropReason.FAILED, result.message or "refused by the backend", tally.failed, quiet=quiet)
        for reason, group in tally.rejected.items():
            self.count_drop(DropReason.REJECTED, reason, group)
        if tally.retry:
            retried = {id(event) for event in tally.retry}
            self._settled([event for event in batch.events if id(event) not in retried])
        else:
            self._settled(batch.events)
        return tally.retry
