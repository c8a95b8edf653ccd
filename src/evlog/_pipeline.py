"""One exporter's bounded buffer and the worker thread that batches, exports and retries.

Each exporter has its own pipeline, so a slow or dead backend only ever fills its own buffer. The router is
the only producer (it appends without a lock; ``deque.append`` is atomic) and the worker the only consumer.
The worker sleeps until the buffer holds a full batch or the router's interval tick says "flush", and waits
out retry delays on the stop event, so shutdown interrupts them at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from evlog._accounting import DropReason, ExporterStats, Reporter
from evlog._event import Event
from evlog._guard import guarded
from evlog._retry import RetryPolicy
from evlog.exporters._base import Batch, Exporter, ExportResult, ExportStatus

__all__ = ["FlushMarker", "Pipeline"]


class FlushMarker:
    """Placed in a buffer by ``flush()``; set once everything queued before it has been handed off."""

    __slots__ = ("deadline", "done", "ok")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.ok = True


class Pipeline:
    def __init__(
        self,
        exporter: Exporter,
        *,
        max_queue_size: int,
        policy: RetryPolicy,
        reporter: Reporter,
    ) -> None:
        self.exporter = exporter
        self.name = exporter.name or type(exporter).__name__
        self.max_batch = max(1, exporter.max_batch_size)
        self.cap = max_queue_size
        self.policy = policy
        self.reporter = reporter
        self._init_state()

    def _init_state(self) -> None:
        self._buf: deque[Event | FlushMarker] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._flush_due = False
        self._markers = 0
        self._stopping = False
        self._abandoned = False
        self._shutdown_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._in_flight: Batch | None = None
        self._exporter_closed = False
        self.sent = 0
        self.retried = 0
        self._details: dict[str, Any] = {}

    # --- producer side (router thread) ---------------------------------------------------------------

    def put(self, event: Event) -> bool:
        """Queue ``event``; False when the buffer is full (the caller counts the drop)."""
        buf = self._buf
        if len(buf) >= self.cap:
            return False
        buf.append(event)
        if len(buf) >= self.max_batch:
            self._wake.set()
        return True

    @property
    def is_full(self) -> bool:
        return len(self._buf) >= self.cap

    def tick(self) -> None:
        """The flush interval elapsed: send what is buffered even if it is not a full batch."""
        if self._buf:
            self._flush_due = True
            self._wake.set()

    def add_marker(self, marker: FlushMarker) -> None:
        self._markers += 1
        self._buf.append(marker)
        self._flush_due = True
        self._wake.set()

    def ensure_started(self) -> None:
        if self._thread is None and not self._stopping:
            thread = threading.Thread(target=self._run, name=f"evlog-export-{self.name}", daemon=True)
            self._thread = thread
            thread.start()

    # --- worker ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                flush_all = self._flush_due or self._stopping
                self._flush_due = False
                self._drain(flush_all)
                if self._stopping and not self._buf:
                    break
        except Exception:  # pragma: no cover - a bug here must not kill silently
            self.reporter.warn("worker", f"the {self.name!r} worker stopped on an error", exc_info=True)
        finally:
            self._close_exporter()

    def _close_exporter(self) -> None:
        with self._lock:
            if self._exporter_closed:
                return
            self._exporter_closed = True
        timeout = 0.0
        if self._shutdown_deadline is not None:
            timeout = max(0.0, self._shutdown_deadline - time.monotonic())
        with guarded():
            try:
                self.exporter.shutdown(timeout)
            except Exception:
                self.reporter.warn(
                    "shutdown", f"exporter {self.name!r} raised in shutdown()", exporter=self.name, exc_info=True
                )

    def _drain(self, flush_all: bool) -> None:
        buf = self._buf
        while buf:
            if self._abandoned:
                return
            head = buf[0]
            if isinstance(head, FlushMarker):
                buf.popleft()
                self._markers -= 1
                self._finish_marker(head)
                continue
            if not (flush_all or self._stopping) and len(buf) < self.max_batch:
                return
            events: list[Event] = []
            with self._lock:
                if self._abandoned:
                    return
                while buf and len(events) < self.max_batch and not isinstance(buf[0], FlushMarker):
                    events.append(buf.popleft())  # type: ignore[arg-type]
                batch = Batch(tuple(events), deadline=self._batch_deadline(time.monotonic()))
                self._in_flight = batch
            self._deliver(batch)

    def _batch_deadline(self, start: float) -> float:
        deadline = start + self.policy.deadline if self.policy.deadline > 0 else start + 30.0
        if self._shutdown_deadline is not None:
            deadline = min(deadline, self._shutdown_deadline)
        return deadline

    def _finish_marker(self, marker: FlushMarker) -> None:
        remaining = max(0.0, marker.deadline - time.monotonic())
        with guarded():
            try:
                marker.ok = bool(self.exporter.force_flush(remaining))
            except Exception:
                marker.ok = False
                self.reporter.warn(
                    "force_flush",
                    f"exporter {self.name!r} raised in force_flush()",
                    exporter=self.name,
                    exc_info=True,
                )
        marker.done.set()

    def _deliver(self, batch: Batch) -> None:
        started = time.monotonic()
        give_up_at = started + self.policy.deadline
        attempt = 0
        while True:
            try:
                with guarded():
                    result = self.exporter.export(batch)
                if not isinstance(result, ExportResult):
                    raise TypeError(f"export() returned {type(result).__name__}, not an ExportResult")
            except Exception as exc:
                if self._settle(batch):
                    self.reporter.warn(
                        "export_error",
                        f"exporter {self.name!r} raised in export()",
                        exporter=self.name,
                        exc_info=True,
                    )
                    self.reporter.drop(
                        DropReason.EXPORT_ERROR,
                        len(batch),
                        exporter=self.name,
                        events=batch.events,
                        detail=f"{type(exc).__name__}: {exc}",
                    )
                return
            retry = self._account(batch, result)
            if not retry:
                return
            detail = result.message or "transient failure"
            if self._stopping:
                self._lose(DropReason.SHUTDOWN, retry, f"shutting down before a retry could be made: {detail}")
                return
            wait = self.policy.delay(attempt, result.retry_after)
            if time.monotonic() + wait > give_up_at:
                self._lose(
                    DropReason.RETRIES_EXHAUSTED,
                    retry,
                    f"still failing after {attempt + 1} attempt(s) (retry_deadline "
                    f"{self.policy.deadline:g}s): {detail}",
                )
                return
            with self._lock:
                if self._abandoned:
                    return
                self.retried += len(retry)
                batch = batch.retry(retry, deadline=self._batch_deadline(time.monotonic()))
                self._in_flight = batch
            if self._stop.wait(wait):
                if self._settle(batch):
                    self._count_drop(DropReason.SHUTDOWN, batch.events, f"shutdown during a retry wait: {detail}")
                return
            attempt += 1

    def _settle(self, batch: Batch) -> bool:
        """Take the batch out of flight; False when shutdown already counted it."""
        with self._lock:
            if self._abandoned:
                return False
            self._in_flight = None
            return True

    def _lose(self, reason: DropReason, events: list[Event], detail: str) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._in_flight = None
        self._count_drop(reason, events, detail)

    def _count_drop(self, reason: DropReason, events: tuple[Event, ...] | list[Event], detail: str) -> None:
        self.reporter.drop(reason, len(events), exporter=self.name, events=tuple(events), detail=detail)

    def _account(self, batch: Batch, result: ExportResult) -> list[Event]:
        """Count a result; the events to retry (empty when done)."""
        events = batch.events
        with self._lock:
            if self._abandoned:
                return []
            if result.details:
                self._details.update(result.details)
            status = result.status
            if status is ExportStatus.SUCCESS:
                self.sent += len(events)
                self._in_flight = None
                return []
            if status is ExportStatus.FAILURE:
                self._in_flight = None
                failed: list[Event] = list(events)
                rejected: dict[str, list[Event]] = {}
                retry: list[Event] = []
            else:
                failed = []
                rejected = {}
                retry = []
                all_retry = status is ExportStatus.RETRY and result.retry_ids is None
                for event in events:
                    reason = result.rejected.get(event.event_id)
                    if reason is not None:
                        rejected.setdefault(reason, []).append(event)
                    elif all_retry or (result.retry_ids is not None and event.event_id in result.retry_ids):
                        retry.append(event)
                    else:
                        self.sent += 1
                if not retry:
                    self._in_flight = None
        if failed:
            self._count_drop(DropReason.FAILED, failed, result.message or "refused by the backend")
        for reason, group in rejected.items():
            self._count_drop(DropReason.REJECTED, group, reason)
        return retry

    # --- control -----------------------------------------------------------------------------------------

    def begin_shutdown(self, deadline: float) -> None:
        self._shutdown_deadline = deadline
        self._stopping = True
        self._stop.set()
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
            self._abandoned = True
            in_flight = self._in_flight
            self._in_flight = None
            leftover = [e for e in self._buf if isinstance(e, Event)]
            self._buf.clear()
        if in_flight is not None:
            self._count_drop(
                DropReason.SHUTDOWN,
                in_flight.events,
                "in flight when the shutdown timeout ran out (the exporter did not return in time)",
            )
        if leftover:
            self._count_drop(DropReason.SHUTDOWN, leftover, "still queued when the shutdown timeout ran out")
        return False

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and the parent still owns the queued events."""
        self._init_state()
        with guarded():
            try:
                self.exporter.reset_after_fork()
            except Exception:
                self.reporter.warn("fork", f"exporter {self.name!r} raised in reset_after_fork()", exc_info=True)

    def snapshot(self) -> ExporterStats:
        with self._lock:
            queued = max(0, len(self._buf) - self._markers)
            if self._in_flight is not None:
                queued += len(self._in_flight)
            details = dict(self._details)
            sent, retried = self.sent, self.retried
        try:
            details.update(self.exporter.stats())
        except Exception:
            self.reporter.warn("stats", f"exporter {self.name!r} raised in stats()", exc_info=True)
        return ExporterStats(queued=queued, sent=sent, retried=retried, details=details)
