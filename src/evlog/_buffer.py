"""One exporter's bounded buffer: events (and flush markers) between the router and that exporter's worker.

The router is the only producer (``deque.append`` is atomic, so it takes no lock) and the worker the only
consumer. Bounded by ``max_queue_size``: a remote backend that is behind overflows it, and the router counts
(or spools) what does not fit. For exporters that write locally (``backpressure``) a full buffer makes the
router wait for room instead, because their speed is the process's own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from evlog._event import Event

__all__ = ["Buffer", "FlushMarker"]

#: How long the router waits for room in the buffer of an exporter with ``backpressure`` before dropping.
ROOM_WAIT_SECONDS = 1.0


class FlushMarker:
    """Placed in a buffer by ``flush()``; set once everything queued before it was delivered or given up on.

    ``ok`` ends False when any of those events was lost: losses are counted per pipeline by the router and by
    the worker separately, each of which handles events in log order, so comparing each count when the flush
    was asked for and when the marker is reached covers exactly the events logged before the call.
    """

    __slots__ = ("deadline", "done", "ok", "router_lost", "worker_lost")

    def __init__(self, deadline: float, *, router_lost: int, worker_lost: int) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.ok = True
        self.router_lost = router_lost
        self.worker_lost = worker_lost


Item = Event | FlushMarker


class Buffer:
    def __init__(self, capacity: int, *, batch: int, backpressure: bool, wake: threading.Event) -> None:
        self.capacity = capacity
        self.batch = batch
        self.backpressure = backpressure
        self._wake = wake
        self._items: deque[Item] = deque()
        self._markers = 0
        self._room = threading.Condition(threading.Lock())
        self._room_wanted = False
        #: Set when the worker should send what it has even if it is less than a batch.
        self.flush_due = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def events(self) -> int:
        """Events waiting (flush markers left out)."""
        return max(0, len(self._items) - self._markers)

    @property
    def full(self) -> bool:
        """Full for good: an exporter with backpressure is never full, the router waits for it instead."""
        return len(self._items) >= self.capacity and not self.backpressure

    # --- the router's side -----------------------------------------------------------------------------

    def put(self, event: Event, *, waiting_allowed: Callable[[], bool]) -> bool:
        """Append ``event``; False when there is no room (after a bounded wait, with backpressure)."""
        items = self._items
        if len(items) >= self.capacity and not (self.backpressure and self._wait_for_room(waiting_allowed)):
            return False
        items.append(event)
        if len(items) >= self.batch:
            self._wake.set()
        return True

    def _wait_for_room(self, waiting_allowed: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + ROOM_WAIT_SECONDS
        with self._room:
            self._room_wanted = True
            while len(self._items) >= self.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or not waiting_allowed():
                    return False
                self.flush_due = True
                self._wake.set()
                self._room.wait(left)
        return True

    def add_marker(self, marker: FlushMarker) -> None:
        self._markers += 1
        self._items.append(marker)
        self.flush_due = True
        self._wake.set()

    def tick(self) -> None:
        """The flush interval elapsed: the worker sends what is buffered even if it is not a full batch."""
        if self._items:
            self.flush_due = True
            self._wake.set()

    # --- the worker's side -------------------------------------------------------------------------------

    def head(self) -> Item | None:
        return self._items[0] if self._items else None

    def pop_marker(self) -> FlushMarker:
        marker = self._items.popleft()
        self._markers -= 1
        return marker  # type: ignore[return-value]

    def take(self) -> list[Event]:
        """Up to a batch of events from the head, stopping at a flush marker."""
        items = self._items
        events: list[Event] = []
        while items and len(events) < self.batch and not isinstance(items[0], FlushMarker):
            events.append(items.popleft())  # type: ignore[arg-type]
        if self._room_wanted:
            with self._room:
                self._room_wanted = False
                self._room.notify_all()
        return events

    def flush_deadline(self, now: float) -> float | None:
        """The earliest deadline of a flush still waiting in the buffer (None: none waits)."""
        deadlines = [m.deadline for m in list(self._items) if isinstance(m, FlushMarker) and m.deadline > now]
        return min(deadlines, default=None)

    def clear(self) -> list[Event]:
        """Empty the buffer; the events it held (markers are left to their own timeout)."""
        events = [item for item in list(self._items) if isinstance(item, Event)]
        self._items.clear()
        return events
