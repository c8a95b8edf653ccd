"""One exporter's bounded buffer and the worker thread that batches, exports and retries.

Each exporter has its own pipeline, so a slow or dead backend only ever fills its own buffer. The router is
the only producer (it appends without a lock; ``deque.append`` is atomic) and the worker the only consumer.
The worker sleeps until the buffer holds a full batch or the router's interval tick says "flush", and waits
out retry delays on the stop event, so shutdown interrupts them at once.

Shutdown is one explicit state (``State``): RUNNING, then DRAINING once shutdown began (the worker sends what
is buffered within the deadline), then either CLOSED (the worker finished) or ABANDONED (the deadline passed
while the worker was still busy: shutdown counted what was left, and whatever the worker learns afterwards is
no longer counted, so nothing is counted twice).
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs

from evlog._accounting import DropReason, ExporterStats, Reporter
from evlog._event import Event
from evlog._guard import guarded
from evlog._retry import RetryPolicy, fit_wait
from evlog.exporters._base import Batch, Exporter, ExportResult, ExportStatus

__all__ = ["FlushMarker", "Pipeline", "State", "Tally"]

#: How long the router waits for room in the buffer of an exporter with ``backpressure`` before dropping.
_ROOM_WAIT_SECONDS = 1.0
#: Request deadline of a batch when ``retry_deadline`` is 0 (no retries): the exporter still needs a bound.
_NO_RETRY_REQUEST_SECONDS = 30.0


class State(enum.Enum):
    RUNNING = "running"
    DRAINING = "draining"
    ABANDONED = "abandoned"
    CLOSED = "closed"


class FlushMarker:
    """Placed in a buffer by ``flush()``; set once everything queued before it was delivered or given up on.

    ``ok`` ends False when any of those events was lost: losses are counted per pipeline by the router and by
    the worker separately, each of which handles events in log order, so comparing each count when the flush
    was asked for and when the marker is reached covers exactly the events logged before the call.
    """

    __slots__ = ("deadline", "done", "ok", "router_lost", "worker_lost")

    def __init__(self, deadline: float, pipeline: Pipeline) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.ok = True
        self.router_lost = pipeline.router_lost
        self.worker_lost = pipeline.worker_lost


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


class Pipeline:
    def __init__(self, exporter: Exporter, *, max_queue_size: int, policy: RetryPolicy, reporter: Reporter) -> None:
        self.exporter = exporter
        self.name = exporter.name or type(exporter).__name__
        self.max_batch = max(1, exporter.max_batch_size)
        self.backpressure = type(exporter).backpressure
        self.cap = max_queue_size
        self.policy = policy
        self.reporter = reporter
        self._init_state()

    def _init_state(self) -> None:
        self._buf: deque[Event | FlushMarker] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._room = threading.Condition(threading.Lock())
        self._room_wanted = False
        self._state = State.RUNNING
        self._flush_due = False
        self._markers = 0
        self._shutdown_deadline: float | None = None
        self._thread: threading.Thread | None = None
        #: The batch the worker is exporting or waiting to retry (counted by shutdown if it is abandoned).
        self._in_flight: Batch | None = None
        #: Set to make a worker that waits for a retry plan again (shutdown began, or a flush is waiting).
        self._replan = threading.Event()
        #: True while ``export`` runs: a batch abandoned then has an unknown outcome, not a known loss.
        self._exporting = False
        self.sent = 0
        self.retried = 0
        self.unknown = 0
        #: Events offered by the router (accepted or not): the pipeline's share of what was logged.
        self.offered = 0
        #: Losses counted for this exporter by the router, and by this worker (see ``FlushMarker``).
        self.router_lost = 0
        self.worker_lost = 0
        self._details: dict[str, Any] = {}

    @property
    def state(self) -> State:
        return self._state

    # --- producer side (router thread) ---------------------------------------------------------------

    def put(self, event: Event) -> bool:
        """Queue ``event``; False when the buffer is full (the caller counts the drop)."""
        buf = self._buf
        self.offered += 1
        if len(buf) >= self.cap and not (self.backpressure and self._wait_for_room()):
            self.router_lost += 1
            return False
        buf.append(event)
        if len(buf) >= self.max_batch:
            self._wake.set()
        return True

    @property
    def is_full(self) -> bool:
        return len(self._buf) >= self.cap and not self.backpressure

    def _wait_for_room(self) -> bool:
        """For an exporter that writes locally: its speed is the process's own, so the router waits for it
        (and, once the intake fills, the app's ``log_event`` waits briefly) rather than dropping events."""
        deadline = time.monotonic() + _ROOM_WAIT_SECONDS
        with self._room:
            self._room_wanted = True
            while len(self._buf) >= self.cap:
                left = deadline - time.monotonic()
                if left <= 0 or self._state is not State.RUNNING:
                    return False
                self._flush_due = True
                self._wake.set()
                self._room.wait(left)
        return True

    def tick(self) -> None:
        """The flush interval elapsed: send what is buffered even if it is not a full batch."""
        if self._buf:
            self._flush_due = True
            self._wake.set()

    def add_marker(self, marker: FlushMarker) -> None:
        """Routed behind every earlier event; the router's losses for those are all counted by now."""
        if self.router_lost != marker.router_lost:
            marker.ok = False
        self._markers += 1
        self._buf.append(marker)
        self._flush_due = True
        self._wake.set()
        self._replan.set()

    def lost_before_fan_out(self, count: int) -> None:
        """The router lost events for every exporter (a processor failed, every buffer was full...)."""
        self.router_lost += count

    def ensure_started(self) -> None:
        if self._thread is None and self._state is State.RUNNING:
            thread = threading.Thread(target=self._run, name=f"evlog-export-{self.name}", daemon=True)
            self._thread = thread
            thread.start()

    # --- worker ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                draining = self._state is not State.RUNNING
                flush_all = self._flush_due or draining
                self._flush_due = False
                self._drain(flush_all)
                if draining and not self._buf:
                    break
        except Exception:  # pragma: no cover - a bug here must not kill silently
            self.reporter.warn("worker", f"the {self.name!r} worker stopped on an error", exc_info=True)
        finally:
            self._close_exporter()

    def _close_exporter(self) -> None:
        with self._lock:
            if self._state is State.CLOSED:
                return
            if self._state is not State.ABANDONED:
                self._state = State.CLOSED
        timeout = 0.0
        if self._shutdown_deadline is not None:
            timeout = max(0.0, self._shutdown_deadline - time.monotonic())
        self._call("shutdown", lambda: self.exporter.shutdown(timeout))

    def _call(self, what: str, call: Any) -> Any:
        """Run one of the exporter's optional methods; its failure is logged, never raised."""
        with guarded():
            try:
                return call()
            except Exception:
                self.reporter.warn(
                    what, f"exporter {self.name!r} raised in {what}()", exporter=self.name, exc_info=True
                )
                return None

    def _drain(self, flush_all: bool) -> None:
        buf = self._buf
        while buf:
            head = buf[0]
            if isinstance(head, FlushMarker):
                buf.popleft()
                self._markers -= 1
                self._finish_marker(head)
                continue
            if not flush_all and self._state is State.RUNNING and len(buf) < self.max_batch:
                return
            with self._lock:
                if self._state is State.ABANDONED:
                    return
                events: list[Event] = []
                while buf and len(events) < self.max_batch and not isinstance(buf[0], FlushMarker):
                    events.append(buf.popleft())  # type: ignore[arg-type]
                start = time.monotonic()
                batch = Batch(tuple(events), deadline=self._request_deadline(start, start))
                self._in_flight = batch
            if self._room_wanted:
                with self._room:
                    self._room_wanted = False
                    self._room.notify_all()
            self._deliver(batch, start)

    def _request_deadline(self, first_attempt: float, now: float) -> float:
        """A batch's requests must end by its retry deadline, counted from its first attempt, and by shutdown's."""
        retries = self.policy.deadline > 0
        deadline = first_attempt + self.policy.deadline if retries else now + _NO_RETRY_REQUEST_SECONDS
        if self._shutdown_deadline is not None:
            deadline = min(deadline, self._shutdown_deadline)
        return deadline

    def _finish_marker(self, marker: FlushMarker) -> None:
        remaining = max(0.0, marker.deadline - time.monotonic())
        ok = self._call("force_flush", lambda: bool(self.exporter.force_flush(remaining)))
        if ok is not True or self.worker_lost != marker.worker_lost:
            marker.ok = False
        marker.done.set()

    def _flush_deadline(self, now: float) -> float | None:
        """The earliest deadline of a flush still waiting behind the batch in flight (None: none waits)."""
        deadlines = [m.deadline for m in list(self._buf) if isinstance(m, FlushMarker) and m.deadline > now]
        return min(deadlines, default=None)

    def _deliver(self, batch: Batch, first_attempt: float) -> None:
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
                    if self.state is State.ABANDONED:  # shutdown gave up on it meanwhile, and counted it
                        return
                    self.retried += len(retry)
                    batch = batch.retry(retry, deadline=self._request_deadline(first_attempt, time.monotonic()))
                    self._in_flight = batch
                plan = self._wait_for_retry(plan, attempt, result.retry_after, first_attempt)
            if plan is None:
                if self._settle():
                    self._count_drop(*self._why_given_up(attempt, first_attempt, detail), retry)
                return
            final = plan[1]
            attempt += 1

    def _export(self, batch: Batch) -> ExportResult | None:
        """One ``export`` call; None when it raised (counted here) or shutdown abandoned the batch meanwhile."""
        self._exporting = True
        try:
            with guarded():
                result = self.exporter.export(batch)
            if not isinstance(result, ExportResult):
                raise TypeError(f"export() returned {type(result).__name__}, not an ExportResult")
        except Exception as exc:
            self._exporting = False
            if self._settle():
                self.reporter.warn(
                    "export_error", f"exporter {self.name!r} raised in export()", exporter=self.name, exc_info=True
                )
                self._count_drop(DropReason.EXPORT_ERROR, f"{type(exc).__name__}: {exc}", batch.events)
            return None
        self._exporting = False
        return result

    def _next_wait(
        self, attempt: int, requested: float | None, first_attempt: float, final: bool
    ) -> tuple[float, bool] | None:
        """(seconds before the next attempt, whether it is the last one); None: no attempt fits any more.

        The batch's own deadline and shutdown's are hard: the wait is shortened once, for a final attempt,
        rather than given up on. A waiting flush only makes the worker hurry: its deadline shortens the wait
        when it can, and never makes the worker give up.
        """
        if self.policy.deadline <= 0:
            return None
        now = time.monotonic()
        wait = self.policy.delay(attempt, requested)
        hard = first_attempt + self.policy.deadline
        if self._shutdown_deadline is not None:
            hard = min(hard, self._shutdown_deadline)
        soft = self._flush_deadline(now)
        if soft is not None and soft < hard:
            hurried = fit_wait(wait, now, soft)
            if hurried is not None:
                wait = hurried
        fitted = fit_wait(wait, now, hard)
        if fitted is None or (final and fitted < wait):
            return None
        return fitted, fitted < wait

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
        shutdown = self._shutdown_deadline
        if shutdown is not None and (self.policy.deadline <= 0 or shutdown < first_attempt + self.policy.deadline):
            return DropReason.SHUTDOWN, f"the shutdown deadline came before the backend recovered: {detail}"
        return (
            DropReason.RETRIES_EXHAUSTED,
            f"still failing after {attempt + 1} attempt(s) (retry_deadline {self.policy.deadline:g}s): {detail}",
        )

    def _settle(self) -> bool:
        """Take the batch out of flight; False when shutdown abandoned it (and so already counted it)."""
        with self._lock:
            if self._state is State.ABANDONED:
                return False
            self._in_flight = None
            return True

    def _count_drop(self, reason: DropReason, detail: str, events: Sequence[Event]) -> None:
        if reason is DropReason.OUTCOME_UNKNOWN:
            self.unknown += len(events)
        else:
            self.worker_lost += len(events)
        self.reporter.drop(reason, len(events), exporter=self.name, events=tuple(events), detail=detail)

    def _account(self, batch: Batch, result: ExportResult) -> list[Event]:
        """Count a result; the events to retry (empty when done). The batch stays in flight while retried."""
        tally = Tally.of(batch.events, result)
        with self._lock:
            if self._state is State.ABANDONED:
                return []
            if result.details:
                self._details.update(result.details)
            self.sent += tally.sent
            if not tally.retry:
                self._in_flight = None
        if tally.failed:
            self._count_drop(DropReason.FAILED, result.message or "refused by the backend", tally.failed)
        for reason, group in tally.rejected.items():
            self._count_drop(DropReason.REJECTED, reason, group)
        return tally.retry

    # --- control -----------------------------------------------------------------------------------------

    def begin_shutdown(self, deadline: float) -> None:
        with self._lock:
            self._shutdown_deadline = deadline
            if self._state is State.RUNNING:
                self._state = State.DRAINING
        self._replan.set()
        self._wake.set()

    def finish_shutdown(self, deadline: float) -> bool:
        """Wait for the worker until ``deadline``; count what is left as lost. True when it finished."""
        thread = self._thread
        if thread is None:
            self._close_exporter()
            return True
        thread.join(max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            return True
        with self._lock:
            self._state = State.ABANDONED
            in_flight, self._in_flight = self._in_flight, None
            exporting = self._exporting
            leftover = [e for e in self._buf if isinstance(e, Event)]
            self._buf.clear()
        if in_flight is not None and exporting:
            why = "its request was under way when the shutdown timeout ran out: the backend may have it or not"
            self._count_drop(DropReason.OUTCOME_UNKNOWN, why, in_flight.events)
        elif in_flight is not None:
            why = "waiting for a retry when the shutdown timeout ran out"
            self._count_drop(DropReason.SHUTDOWN, why, in_flight.events)
        if leftover:
            self._count_drop(DropReason.SHUTDOWN, "still queued when the shutdown timeout ran out", leftover)
        return False

    def reset_after_fork(self, reporter: Reporter) -> None:
        """In a forked child: the parent's thread is gone and the parent still owns the queued events."""
        self.reporter = reporter
        self._init_state()
        self._call("reset_after_fork", self.exporter.reset_after_fork)

    def snapshot(self) -> ExporterStats:
        with self._lock:
            queued = max(0, len(self._buf) - self._markers)
            if self._in_flight is not None:
                queued += len(self._in_flight)
            details = dict(self._details)
            sent, retried, unknown, offered = self.sent, self.retried, self.unknown, self.offered
        extra = self._call("stats", self.exporter.stats)
        if extra:
            details.update(extra)
        return ExporterStats(
            queued=queued, sent=sent, retried=retried, unknown=unknown, logged=offered, details=details
        )
