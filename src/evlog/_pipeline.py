"""One exporter's pipeline: its buffer, the worker thread that takes batches from it, and its shutdown.

Each exporter has its own pipeline, so a slow or dead backend only ever fills its own buffer (``_buffer``).
The worker sleeps until the buffer holds a full batch or the router's interval tick says "flush", and hands
each batch to the delivery (``_delivery``), which attempts and retries it.

Shutdown is one explicit state (``State``): RUNNING, then DRAINING once shutdown began (the worker sends what
is buffered within the deadline), then either CLOSED (the worker finished) or ABANDONED (the deadline passed
while the worker was still busy: shutdown counted what was left, and whatever the worker learns afterwards is
no longer counted, so nothing is counted twice).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evlog._accounting import DropReason, ExporterStats, Reporter
from evlog._buffer import Buffer, FlushMarker
from evlog._delivery import Delivery
from evlog._event import Event
from evlog._guard import guarded
from evlog._retry import RetryPolicy
from evlog.exporters._base import Batch, Exporter, ExportResult

__all__ = ["Pipeline", "State"]


class State(enum.Enum):
    RUNNING = "running"
    DRAINING = "draining"
    ABANDONED = "abandoned"
    CLOSED = "closed"


class Pipeline:
    def __init__(self, exporter: Exporter, *, max_queue_size: int, policy: RetryPolicy, reporter: Reporter) -> None:
        self.exporter = exporter
        self.name = exporter.name or type(exporter).__name__
        self.max_batch = max(1, exporter.max_batch_size)
        self.cap = max_queue_size
        self.policy = policy
        self.reporter = reporter
        #: Told of the events this exporter is done with (the durable spool forgets them); set by the client.
        self.on_settled: Callable[[str, Sequence[Event]], None] | None = None
        #: Told of every export result (the ``debug`` option logs them).
        self.on_result: Callable[[str, Batch, ExportResult], None] | None = None
        #: What an earlier process saved for events adopted from its spool (see ``Batch.origins``).
        self.origin_of: Callable[[str, str], Mapping[str, str] | None] | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._wake = threading.Event()
        self.buffer = Buffer(
            self.cap, batch=self.max_batch, backpressure=type(self.exporter).backpressure, wake=self._wake
        )
        self._lock = threading.Lock()
        self._state = State.RUNNING
        self._shutdown_deadline: float | None = None
        self._delivery_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._replan = threading.Event()
        self.delivery = Delivery(
            self.exporter,
            name=self.name,
            policy=self.policy,
            reporter=self.reporter,
            lock=self._lock,
            abandoned=lambda: self._state is State.ABANDONED,
            shutdown_deadline=lambda: self._delivery_deadline,
            flush_deadline=self.buffer.flush_deadline,
            replan=self._replan,
            settled=self._settled,
        )
        self.delivery.on_result = self.on_result
        #: Events offered by the router (accepted or not): the pipeline's share of what was logged.
        self.offered = 0
        #: Losses counted for this exporter by the router (see ``FlushMarker``).
        self.router_lost = 0
        #: Events kept on disk only (the durable spool holds them while the buffer is full).
        self.spilled = 0

    @property
    def state(self) -> State:
        return self._state

    # --- producer side (router thread) ---------------------------------------------------------------

    def put(self, event: Event, *, count: bool = True) -> bool:
        """Queue ``event``; False when the buffer is full (the caller counts the drop, or spools it).

        ``count=False`` for an event read back from the spool: it was counted when it was first offered.
        """
        if count:
            self.offered += 1
        if self.buffer.put(event, waiting_allowed=lambda: self._state is State.RUNNING):
            return True
        if count:
            self.router_lost += 1
        return False

    @property
    def is_full(self) -> bool:
        return self.buffer.full

    def tick(self) -> None:
        self.buffer.tick()

    def new_marker(self, deadline: float) -> FlushMarker:
        return FlushMarker(deadline, router_lost=self.router_lost, worker_lost=self.delivery.lost)

    def add_marker(self, marker: FlushMarker) -> None:
        """Routed behind every earlier event; the router's losses for those are all counted by now."""
        if self.router_lost != marker.router_lost:
            marker.ok = False
        self.buffer.add_marker(marker)
        self._replan.set()

    def _origins(self, events: Sequence[Event]) -> dict[str, Mapping[str, str]]:
        find = self.origin_of
        if find is None:
            return {}
        found = {}
        for event in events:
            state = find(self.name, event.event_id)
            if state is not None:
                found[event.event_id] = state
        return found

    def _settled(self, events: Sequence[Event]) -> None:
        hook = self.on_settled
        if hook is not None and events:
            with guarded():
                try:
                    hook(self.name, events)
                except Exception:
                    self.reporter.warn("spool", "the spool could not forget delivered events", exc_info=True)

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
                flush_all = self.buffer.flush_due or draining
                self.buffer.flush_due = False
                self._drain(flush_all)
                if draining and not len(self.buffer):
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
        buffer = self.buffer
        while (head := buffer.head()) is not None:
            if isinstance(head, FlushMarker):
                self._finish_marker(buffer.pop_marker())
                continue
            if not flush_all and self._state is State.RUNNING and len(buffer) < self.max_batch:
                return
            with self._lock:
                if self._state is State.ABANDONED:
                    return
                start = time.monotonic()
                events = tuple(buffer.take())
                batch = Batch(
                    events, deadline=self.delivery.request_deadline(start, start), origins=self._origins(events)
                )
                self.delivery.in_flight = batch
            self.delivery.deliver(batch, start)

    def _finish_marker(self, marker: FlushMarker) -> None:
        remaining = max(0.0, marker.deadline - time.monotonic())
        ok = self._call("force_flush", lambda: bool(self.exporter.force_flush(remaining)))
        if ok is not True or self.delivery.lost != marker.worker_lost:
            marker.ok = False
        marker.done.set()

    # --- control -----------------------------------------------------------------------------------------

    def begin_shutdown(self, deadline: float) -> None:
        reserve = min(type(self.exporter).shutdown_reserve, max(0.0, deadline - time.monotonic()) / 2)
        with self._lock:
            self._shutdown_deadline = deadline
            # Deliveries stop this much earlier, so the exporter's own shutdown (ending a session) has its time.
            self._delivery_deadline = deadline - reserve
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
            delivery = self.delivery
            in_flight, delivery.in_flight = delivery.in_flight, None
            exporting = delivery.exporting
            leftover = self.buffer.clear()
        if in_flight is not None and exporting:
            why = "its request was under way when the shutdown timeout ran out: the backend may have it or not"
            self.delivery.count_drop(DropReason.OUTCOME_UNKNOWN, why, in_flight.events)
        elif in_flight is not None:
            why = "waiting for a retry when the shutdown timeout ran out"
            self.delivery.count_drop(DropReason.SHUTDOWN, why, in_flight.events)
        if leftover:
            self.delivery.count_drop(DropReason.SHUTDOWN, "still queued when the shutdown timeout ran out", leftover)
        return False

    def reset_after_fork(self, reporter: Reporter) -> None:
        """In a forked child: the parent's thread is gone and the parent still owns the queued events."""
        self.reporter = reporter
        self._init_state()
        self._call("reset_after_fork", self.exporter.reset_after_fork)

    def snapshot(self) -> ExporterStats:
        with self._lock:
            delivery = self.delivery
            queued = self.buffer.events + self.spilled
            if delivery.in_flight is not None:
                queued += len(delivery.in_flight)
            details = dict(delivery.details)
            sent, retried, unknown, offered = delivery.sent, delivery.retried, delivery.unknown, self.offered
        extra = self._call("stats", self.exporter.stats)
        if extra:
            details.update(extra)
        return ExporterStats(
            queued=queued, sent=sent, retried=retried, unknown=unknown, logged=offered, details=details
        )
