"""``memory``: keeps delivered events in a list, for tests and inspection."""

from __future__ import annotations

import threading
from typing import Any

import attrs

from evlog._event import Event
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes

__all__ = ["MemoryExporter", "MemoryOptions"]


@attrs.frozen
class MemoryOptions:
    #: Keep at most this many events (the oldest go first); 0 keeps everything.
    max_events: int = attrs.field(default=0, validator=attrs.validators.ge(0))


class MemoryExporter(Exporter):
    """``exporter.events`` is a snapshot of what was delivered, oldest first; ``batches`` counts exports."""

    name = "memory"
    backpressure = True
    Options = MemoryOptions
    options: MemoryOptions

    def __init__(self, options: MemoryOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.batches = 0

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` events arrived; False on timeout. Handy in tests."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._events) >= count, timeout)

    def export(self, batch: Batch) -> ExportResult:
        with self._arrived:
            self._events.extend(batch.events)
            self.batches += 1
            limit = self.options.max_events
            if limit and len(self._events) > limit:
                del self._events[: len(self._events) - limit]
            self._arrived.notify_all()
        outcomes = ExportOutcomes(batch)
        outcomes.accept_rest()
        return outcomes.result()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
