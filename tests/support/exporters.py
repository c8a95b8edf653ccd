"""Exporters for testing the pipeline: ones that hang, fail on demand, and record every call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from evlog import Batch, Exporter, ExportResult


@attrs.define
class Call:
    batch: Batch
    at: float


class ScriptedExporter(Exporter):
    """Answers each export with the next scripted result (then success), recording every call."""

    name = "scripted"

    def __init__(self, *results: ExportResult | Callable[[Batch], ExportResult], max_batch: int = 512) -> None:
        super().__init__()
        self.script = list(results)
        self.calls: list[Call] = []
        self.cond = threading.Condition()
        self._max_batch = max_batch
        self.shutdown_calls = 0

    @property
    def max_batch_size(self) -> int:
        return self._max_batch

    def export(self, batch: Batch) -> ExportResult:
        with self.cond:
            self.calls.append(Call(batch, time.monotonic()))
            self.cond.notify_all()
            step = self.script.pop(0) if self.script else ExportResult.success()
        return step(batch) if callable(step) else step

    def wait_calls(self, count: int, timeout: float = 5.0) -> list[Call]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= count, timeout), (
                f"expected {count} export calls, got {len(self.calls)}"
            )
            return list(self.calls)

    def delivered(self) -> list[str]:
        """Names of events in calls, in order (every attempt counted)."""
        with self.cond:
            return [e.name for c in self.calls for e in c.batch.events]

    def shutdown(self, timeout: float) -> None:
        self.shutdown_calls += 1


class HangingExporter(Exporter):
    """Blocks in export until ``release()`` (or a generous safety timeout)."""

    name = "hanging"

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.released = threading.Event()

    def export(self, batch: Batch) -> ExportResult:
        self.entered.set()
        self.released.wait(30)
        return ExportResult.success()

    def release(self) -> None:
        self.released.set()
