"""The intake queue and the router thread: tuples in, built and processed events out to every pipeline.

The router is the only consumer of the intake and the only producer of each pipeline's buffer. It builds each
event once, runs the ``before_send`` processors, and fans the shared immutable event out. It wakes when the
intake is half full or on the flush interval, so its work is batched and kept out of the app's bursts.
Flush requests travel through the intake like events, so a flush covers exactly what was logged before it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from evlog._accounting import DropReason, Reporter
from evlog._buffer import FlushMarker
from evlog._build import Raw, materialize
from evlog._durable import PERSIST_INTERVAL, Keeper
from evlog._event import Event
from evlog._guard import in_evlog
from evlog._pipeline import Pipeline
from evlog._processors import run_processors
from evlog.typing import Processor

__all__ = ["FlushRequest", "Router"]

#: Wake the router early once the intake is this full (otherwise it wakes on the flush interval). Waking it
#: late keeps its work (building events) out of the app's bursts of calls, and batches it; half full leaves
#: room for the burst to go on while the router catches up.
WAKE_FRACTION = 0.5


#: Events handed out (and written to the spool) together: short enough that threads waiting for room in the
#: intake see the router make progress often, long enough that each spool write carries many events.
_SEGMENT = 1024


class FlushRequest:
    """Queued by ``flush()``: once routed, each pipeline has a marker behind everything logged before."""

    __slots__ = ("markers", "routed")

    def __init__(self, markers: list[FlushMarker]) -> None:
        self.markers = markers
        self.routed = threading.Event()


class Router:
    def __init__(
        self,
        pipelines: Sequence[Pipeline],
        *,
        capacity: int,
        interval: float,
        before_send: Sequence[Processor],
        reporter: Reporter,
        intake_wait: float = 0.0,
        keeper: Keeper | None = None,
    ) -> None:
        self.keeper = keeper
        self.pipelines = list(pipelines)
        self.capacity = capacity
        self.intake_wait = intake_wait
        self.wake_at = max(1, int(capacity * WAKE_FRACTION))
        self.interval = interval
        self.before_send = tuple(before_send)
        self.reporter = reporter
        self._init_runtime()

    def _init_runtime(self) -> None:
        self.intake: deque[Any] = deque()
        self.wake_event = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._intake_full = 0
        self._intake_full_reported = 0
        #: Notified after each routing pass: app threads waiting for room in the intake wake up.
        self._room = threading.Condition(self._lock)
        #: Set when a wait for room ran out: calls drop at once until the router has emptied the intake.
        self._overloaded = False
        self._waiting = 0
        #: Bumped each time the router has taken events from the intake while threads were waiting.
        self._progress = 0

    @property
    def started(self) -> bool:
        return self._thread is not None

    def wake(self) -> None:
        self.wake_event.set()

    def start(self) -> None:
        thread = threading.Thread(target=self._loop, name="evlog-router", daemon=True)
        self._thread = thread
        thread.start()

    # --- app threads ---------------------------------------------------------------------------------------

    def offer(self, raw: Raw | FlushRequest) -> None:
        """Queue ``raw``. When the intake is full, wait for room (at most ``intake_wait``), or count the loss."""
        queue = self.intake
        if type(raw) is tuple and len(queue) >= self.capacity and not self._wait_for_room():
            with self._lock:  # counted here, reported by the router: the app thread only pays for a lock
                self._intake_full += 1
            if not self.wake_event.is_set():
                self.wake_event.set()
            return
        queue.append(raw)
        if len(queue) >= self.wake_at and not self.wake_event.is_set():
            self.wake_event.set()

    def _wait_for_room(self) -> bool:
        """Backpressure: the app logs faster than events can be built, so slow it down rather than lose events.

        Bounded per call; once a wait runs out (a processor is stuck, say) every call drops at once until the
        intake has drained, so the app is never slowed down for long. evlog's own threads never wait here.
        """
        if self.intake_wait <= 0 or self._overloaded or self._thread is None or in_evlog():
            return False
        if threading.current_thread().name.startswith("evlog-"):
            return False
        deadline = time.monotonic() + self.intake_wait
        self.wake_event.set()
        with self._room:
            self._waiting += 1
            seen = self._progress
            try:
                # Room taken by a fast-path call the moment it appeared would starve a waiter: once the
                # router has made progress, the waiter gets in even if that overfills the queue by one
                # event per waiting thread (still bounded).
                while len(self.intake) >= self.capacity and self._progress == seen:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stopping:
                        self._overloaded = True
                        return False
                    self._room.wait(left)
            finally:
                self._waiting -= 1
        return True

    def _let_waiters_in(self) -> None:
        with self._room:
            self._progress += 1
            self._room.notify_all()

    def queued(self) -> int:
        return sum(1 for item in list(self.intake) if type(item) is tuple)

    # --- the router thread -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        keeper = self.keeper
        if keeper is not None:
            keeper.open()
        # With the spool, a pass writes what it built to disk: it runs at least every PERSIST_INTERVAL.
        pass_every = min(self.interval, PERSIST_INTERVAL) if keeper is not None else self.interval
        next_tick = time.monotonic() + self.interval
        try:
            while True:
                timeout = min(next_tick - time.monotonic(), pass_every)
                # Under sustained load the intake refills while a pass runs: go again without waiting.
                if timeout > 0 and not self._stopping and len(self.intake) < self.wake_at:
                    self.wake_event.wait(timeout)
                self.wake_event.clear()
                self.route_pending()
                if keeper is not None:
                    keeper.refill()
                    keeper.enforce_limits()
                now = time.monotonic()
                if now >= next_tick:
                    for pipeline in self.pipelines:
                        pipeline.tick()
                    next_tick = now + self.interval
                if self._stopping and not self.intake:
                    return
        except Exception:  # pragma: no cover - a bug here must be visible, not silent
            self.reporter.warn("router", "the evlog router stopped on an error", exc_info=True)

    def route_pending(self) -> None:
        queue = self.intake
        pipelines = self.pipelines
        keeper = self.keeper
        segment: list[Event] = []
        self._full: dict[int, list[Event]] = {}
        # Overloaded means "drop at once until what was queued when a wait ran out is routed": this pass takes
        # everything queued when it starts, so once it ends, calls may wait for room again.
        was_overloaded = self._overloaded
        unbuilt = 0
        # One pass takes what is there when it starts, so it ends (and reports its drops, and lets the
        # interval tick) even while the app keeps logging faster than events can be built.
        for index in range(len(queue)):
            try:
                item = queue.popleft()
            except IndexError:  # pragma: no cover - only this thread takes from the intake
                break
            if self._waiting and index % 256 == 0:
                self._let_waiters_in()
            if type(item) is FlushRequest:
                self._dispatch(segment)  # a flush covers what was logged before it, so that goes first
                segment = []
                for pipeline, marker in zip(pipelines, item.markers, strict=True):
                    if keeper is not None:
                        keeper.add_marker(pipeline, marker)  # behind what is on disk only, if anything is
                    else:
                        pipeline.add_marker(marker)
                item.routed.set()
                continue
            if keeper is None and all(pipeline.is_full for pipeline in pipelines):
                # No exporter has room: building the event only to drop it would cost CPU and memory.
                unbuilt += 1
                continue
            try:
                built = materialize(item, self.reporter)
            except Exception as exc:  # e.g. a nested dict changed by another thread while it was copied
                self._lost_before_fan_out(1)
                self.reporter.drop(
                    DropReason.BUILD_ERROR, 1, detail=f"could not build the event: {type(exc).__name__}: {exc}"
                )
                continue
            event = (
                run_processors(built, self.before_send, self.reporter, self._lost_before_fan_out)
                if self.before_send
                else built
            )
            if event is not None:
                segment.append(event)
                if len(segment) >= _SEGMENT:
                    self._dispatch(segment)
                    segment = []
        self._dispatch(segment)
        if was_overloaded:
            self._overloaded = False
        if self._waiting:
            self._let_waiters_in()
        self.report_intake_full()
        if unbuilt:
            self._lost_before_fan_out(unbuilt)
            self.reporter.drop(
                DropReason.QUEUE_FULL,
                unbuilt,
                detail="every exporter's buffer was full (max_queue_size) and the backends are behind",
            )
        for index, events in self._full.items():
            pipeline = pipelines[index]
            self.reporter.drop(
                DropReason.QUEUE_FULL,
                len(events),
                exporter=pipeline.name,
                events=events,
                detail=f"its buffer holds max_queue_size={pipeline.cap} events and the backend is behind",
            )

    def _dispatch(self, events: list[Event]) -> None:
        """Hand what a pass built to every exporter: written to the spool first, when there is one."""
        if not events:
            return
        if self._waiting:
            self._let_waiters_in()
        keeper = self.keeper
        if keeper is not None:
            keeper.persist(events)
        for number, pipeline in enumerate(self.pipelines):
            if keeper is not None:
                lost = keeper.offer(pipeline, events)
            else:
                lost = [event for event in events if not pipeline.put(event)]
            if lost:
                self._full.setdefault(number, []).extend(lost)

    def _lost_before_fan_out(self, count: int) -> None:
        for pipeline in self.pipelines:
            pipeline.lost_before_fan_out(count)

    def report_intake_full(self) -> None:
        with self._lock:
            lost = self._intake_full - self._intake_full_reported
            self._intake_full_reported = self._intake_full
        if lost:
            self.reporter.drop(
                DropReason.QUEUE_FULL,
                lost,
                detail=f"the intake queue held max_queue_size={self.capacity} events; the app logs faster than "
                "events can be processed",
            )

    # --- control ---------------------------------------------------------------------------------------------

    def stop(self, deadline: float) -> bool:
        """Route what is queued and stop the thread by ``deadline``; count what is left. True when done."""
        thread = self._thread
        if thread is None:
            return True
        self._stopping = True
        self.wake_event.set()
        thread.join(max(0.0, deadline - time.monotonic()))
        stuck = thread.is_alive()
        leftover = self.queued()
        self.intake.clear()
        if stuck:
            self.reporter.drop(
                DropReason.SHUTDOWN,
                leftover,
                detail="still in the intake queue when the shutdown timeout ran out "
                "(a before_send processor may be blocking)",
            )
        else:
            # A call that raced shutdown may have queued after the router's last pass: count it.
            self.reporter.drop(DropReason.AFTER_SHUTDOWN, leftover, detail="logged while shutdown was under way")
        return not stuck

    def reset_after_fork(self, reporter: Reporter) -> None:
        """In a forked child: the parent's thread is gone, and what it had queued is the parent's to send."""
        self.reporter = reporter
        self._init_runtime()
