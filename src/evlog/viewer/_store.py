"""What the viewer holds: the newest events in a bounded ring, and the latest counters of each process.

Memory stays bounded whatever the apps send: the ring keeps the newest ``capacity`` events and forgets the
oldest, and the page asks for what came after the last sequence number it has, so a page that fell behind
simply skips what the ring already forgot (``missed`` tells it how many).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["EventStore"]

#: Most events one ``after()`` call returns: a page that fell far behind catches up over a few polls.
PAGE_LIMIT = 5000


class EventStore:
    """A thread-safe ring of ``(seq, event dict)``; ``seq`` counts from 1 and never repeats."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._last = 0
        self._processes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, events: Iterable[Mapping[str, Any]], *, source: str) -> int:
        """Keep ``events`` (each tagged with ``seq`` and ``source``); how many were added."""
        added = 0
        with self._lock:
            for event in events:
                self._last += 1
                self._ring.append({**event, "seq": self._last, "source": source})
                added += 1
        return added

    def note_process(self, source: str, process: Mapping[str, Any], stats: Mapping[str, Any], *, events: int) -> None:
        """Remember the newest counters a process sent with a batch."""
        with self._lock:
            entry = self._processes.setdefault(source, {"received": 0})
            entry.update(process=dict(process), stats=dict(stats), last_seen=time.time())
            entry["received"] += events

    def after(self, seq: int, limit: int = PAGE_LIMIT) -> dict[str, Any]:
        """Events newer than ``seq`` (at most ``limit``, oldest first), the processes, and ``missed``: how many
        events after ``seq`` the ring had already forgotten."""
        with self._lock:
            if seq > self._last:  # a page left open across a restart of the viewer: start it over
                seq = 0
            first = self._last - len(self._ring) + 1
            start = max(seq + 1, first)
            skip = start - first
            events = list(itertools.islice(self._ring, skip, skip + limit))
            processes = [{"source": source, **entry} for source, entry in self._processes.items()]
            return {
                "events": events,
                "last": events[-1]["seq"] if events else seq,
                "missed": max(0, first - seq - 1),
                "processes": processes,
            }

    def __len__(self) -> int:
        with self._lock:
            return len(self._ring)
