"""aflush / ashutdown never block the event loop; flush_after delivers before a handler returns."""

from __future__ import annotations

import asyncio
import time

import pytest

import evlog
from evlog.exporters.memory import MemoryExporter
from support.exporters import HangingExporter


def test_aflush_with_a_hung_backend_returns_within_its_timeout_while_other_coroutines_run() -> None:
    hanging = HangingExporter()
    evlog.configure(exporters=[hanging], flush_interval=0.05)
    evlog.log_event("stuck")
    try:
        assert hanging.entered.wait(5)
        evlog.log_event("queued behind it")

        async def main() -> tuple[bool, float, int]:
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)  # the other coroutine's own work, not synchronisation

            task = asyncio.create_task(ticker())
            started = time.monotonic()
            ok = await evlog.aflush(0.5)
            elapsed = time.monotonic() - started
            stop.set()
            await task
            return ok, elapsed, ticks

        ok, elapsed, ticks = asyncio.run(main())
        assert ok is False
        assert 0.45 <= elapsed < 1.5
        assert ticks >= 10  # the loop kept running during the flush
    finally:
        hanging.release()


def test_ashutdown_delivers_and_stops() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=60)
    evlog.log_event("last words")
    assert asyncio.run(evlog.ashutdown(5)) is True
    assert [e.name for e in memory.events] == ["last words"]


def test_flush_after_delivers_before_a_sync_handler_returns() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=60)

    @evlog.flush_after(timeout=5)
    def handler(event: dict[str, str]) -> str:
        evlog.log_event("handled", data=event)
        return "ok"

    assert handler({"id": "1"}) == "ok"
    assert [e.data for e in memory.events] == [{"id": "1"}]  # already there when the handler returned


def test_flush_after_delivers_before_an_async_handler_returns_and_keeps_its_exception() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=60)

    @evlog.flush_after
    async def handler() -> None:
        evlog.log_event("about to fail")
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        asyncio.run(handler())
    assert [e.name for e in memory.events] == ["about to fail"]
