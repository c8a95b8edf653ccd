"""The delivery pipeline: batching, concurrency, flush and shutdown bounds, overflow, retries, fork."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

import evlog
from evlog import Drop, DropReason, ExportResult
from evlog.exporters.memory import MemoryExporter
from support.exporters import HangingExporter, ScriptedExporter


def test_every_event_from_eight_threads_is_delivered_exactly_once() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05, max_queue_size=50_000)
    per_thread = 2_000
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            evlog.log_event("tick", data={"thread": n, "i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert evlog.flush(10)
    seen = [(e.data["thread"], e.data["i"]) for e in memory.events]
    assert len(seen) == 8 * per_thread
    assert set(seen) == {(n, i) for n in range(8) for i in range(per_thread)}
    assert evlog.stats()["memory"].sent == 8 * per_thread
    assert evlog.stats()["memory"].dropped == {}


def test_under_pressure_every_event_is_delivered_or_counted() -> None:
    """Without backpressure (intake_wait=0) a small intake overflows; every loss is counted."""
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05, max_queue_size=500, intake_wait=0)

    def worker() -> None:
        for i in range(3_000):
            evlog.log_event("tick", data={"i": i})

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    evlog.flush(10)
    stats = evlog.stats()["memory"]
    assert stats.dropped.get("queue_full", 0) > 0
    assert len(memory.events) + stats.dropped_total == 12_000
    assert stats.sent == len(memory.events)


def test_batches_respect_the_exporters_max_batch_size() -> None:
    exporter = ScriptedExporter(max_batch=10)
    evlog.configure(exporters=[exporter], flush_interval=0.05)
    for i in range(35):
        evlog.log_event("e", data={"i": i})
    assert evlog.flush(5)
    sizes = [len(c.batch) for c in exporter.calls]
    assert sum(sizes) == 35
    assert max(sizes) <= 10


def test_events_are_flushed_on_the_interval_without_flush() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05)
    evlog.log_event("lonely")
    assert memory.wait_for(1, timeout=5)


def test_shutdown_is_bounded_when_an_exporter_hangs() -> None:
    hanging = HangingExporter()
    memory = MemoryExporter()
    evlog.configure(exporters=[hanging, memory], flush_interval=0.05)
    try:
        evlog.log_event("stuck")
        assert hanging.entered.wait(5)
        evlog.log_event("queued behind it")
        started = time.monotonic()
        finished = evlog.shutdown(timeout=1)
        elapsed = time.monotonic() - started
        assert not finished
        assert 0.9 <= elapsed < 1.6
        stats = evlog.stats()["hanging"]
        assert stats.dropped == {"shutdown": 1}  # queued behind the request: known not sent
        assert stats.unknown == 1  # in flight: the backend may have it, so it is neither sent nor dropped
        assert [e.name for e in memory.events] == ["stuck", "queued behind it"]
    finally:
        hanging.release()


def test_flush_returns_false_when_it_cannot_finish_in_time() -> None:
    hanging = HangingExporter()
    evlog.configure(exporters=[hanging], flush_interval=0.05)
    try:
        evlog.log_event("stuck")
        assert hanging.entered.wait(5)
        started = time.monotonic()
        assert evlog.flush(timeout=0.3) is False
        assert time.monotonic() - started < 1.0
    finally:
        hanging.release()
    assert evlog.flush(timeout=5) is True


def test_a_hanging_exporter_does_not_delay_another() -> None:
    hanging = HangingExporter()
    memory = MemoryExporter()
    evlog.configure(exporters=[hanging, memory], flush_interval=0.05)
    try:
        for i in range(5):
            evlog.log_event("e", data={"i": i})
        assert memory.wait_for(5, timeout=5)
    finally:
        hanging.release()


def test_overflow_is_counted_not_raised() -> None:
    hanging = HangingExporter()
    drops: list[Drop] = []
    evlog.configure(exporters=[hanging], flush_interval=0.05, max_queue_size=20, on_drop=drops.append)
    try:
        evlog.log_event("first")
        assert hanging.entered.wait(5)
        for i in range(200):
            evlog.log_event("flood", data={"i": i})  # never raises, never blocks
        evlog.flush(0.5)
        stats = evlog.stats()["hanging"]
        assert stats.dropped["queue_full"] >= 150
        assert stats.queued <= 21
        assert sum(d.count for d in drops if d.reason is DropReason.QUEUE_FULL) == stats.dropped["queue_full"]
    finally:
        hanging.release()


def test_retry_honours_the_requested_delay() -> None:
    exporter = ScriptedExporter(ExportResult.retry("busy", after=0.3))
    evlog.configure(exporters=[exporter], flush_interval=0.05, retry_initial_backoff=0.001)
    evlog.log_event("again")
    first, second = exporter.wait_calls(2)
    assert second.at - first.at >= 0.29
    assert second.batch.batch_id == first.batch.batch_id
    assert second.batch.attempt == 1
    assert evlog.flush(5)
    stats = evlog.stats()["scripted"]
    assert (stats.sent, stats.retried) == (1, 1)


def test_shutdown_makes_a_final_attempt_before_its_deadline_instead_of_giving_up() -> None:
    """A Retry-After longer than the time left is shortened: the last chance to deliver beats waiting."""
    exporter = ScriptedExporter(ExportResult.retry("busy", after=30))
    evlog.configure(exporters=[exporter], flush_interval=0.05)
    evlog.log_event("saved")
    exporter.wait_calls(1)
    started = time.monotonic()
    assert evlog.shutdown(timeout=1.5) is True
    assert time.monotonic() - started < 1.5
    assert exporter.delivered() == ["saved", "saved"]
    assert evlog.stats()["scripted"].dropped == {}


def test_shutdown_gives_up_at_its_deadline_when_the_backend_stays_down() -> None:
    exporter = ScriptedExporter(*[ExportResult.retry("down", after=30)] * 10)
    drops: list[Drop] = []
    evlog.configure(exporters=[exporter], flush_interval=0.05, on_drop=drops.append)
    evlog.log_event("doomed")
    exporter.wait_calls(1)
    started = time.monotonic()
    assert evlog.shutdown(timeout=1) is False
    assert time.monotonic() - started < 1.3
    assert len(exporter.calls) == 2  # the first, and one final attempt
    assert [(d.reason, d.count) for d in drops] == [(DropReason.SHUTDOWN, 1)]
    assert drops[0].events[0].name == "doomed"


def test_retries_stop_at_the_deadline() -> None:
    exporter = ScriptedExporter(*[ExportResult.retry("503")] * 50)
    evlog.configure(
        exporters=[exporter],
        flush_interval=0.05,
        retry_initial_backoff=0.01,
        retry_max_backoff=0.02,
        retry_deadline=0.2,
    )
    evlog.log_event("e")
    evlog.flush(3)
    stats = evlog.stats()["scripted"]
    assert stats.dropped == {"retries_exhausted": 1}
    assert 2 <= len(exporter.calls) < 50


def test_a_batchs_deadline_is_fixed_at_its_first_attempt() -> None:
    """Every retry ends by first attempt + retry_deadline: a fresh deadline per retry let batches run over."""
    exporter = ScriptedExporter(*[ExportResult.retry("503")] * 50)
    evlog.configure(
        exporters=[exporter],
        flush_interval=0.05,
        retry_initial_backoff=0.02,
        retry_max_backoff=0.05,
        retry_deadline=0.5,
    )
    evlog.log_event("e")
    evlog.flush(3)
    calls = exporter.calls
    assert len(calls) >= 3
    first_deadline = calls[0].batch.deadline
    assert first_deadline is not None and first_deadline <= calls[0].at + 0.5
    assert [call.batch.deadline for call in calls] == [first_deadline] * len(calls)
    assert evlog.stats()["scripted"].dropped == {"retries_exhausted": 1}


def test_partial_result_drops_rejected_and_retries_the_rest() -> None:
    def first(batch: evlog.Batch) -> ExportResult:
        bad, later, _ok = batch.events
        return ExportResult.partial({bad.event_id: "name too long"}, retry=[later])

    exporter = ScriptedExporter(first)
    drops: list[Drop] = []
    evlog.configure(exporters=[exporter], flush_interval=0.05, retry_initial_backoff=0.001, on_drop=drops.append)
    for name in ("bad", "later", "ok"):
        evlog.log_event(name)
    assert evlog.flush(5) is False  # one event was refused: flush says not everything was delivered
    assert [e.name for e in exporter.calls[1].batch.events] == ["later"]
    stats = evlog.stats()["scripted"]
    assert (stats.sent, stats.retried, stats.dropped) == (2, 1, {"rejected": 1})
    assert drops[0].detail == "name too long"


def test_failure_and_exporter_errors_are_counted_with_their_reason() -> None:
    def boom(batch: evlog.Batch) -> ExportResult:
        raise RuntimeError("exporter bug")

    exporter = ScriptedExporter(ExportResult.failure("HTTP 403: bad key"), boom, max_batch=1)
    evlog.configure(exporters=[exporter], flush_interval=0.05)
    evlog.log_event("one")
    evlog.log_event("two")
    evlog.log_event("three")
    assert evlog.flush(5) is False  # two events were lost
    assert evlog.stats()["scripted"].dropped == {"failed": 1, "export_error": 1}
    assert evlog.stats()["scripted"].sent == 1


def test_losses_are_logged_without_flooding(caplog: pytest.LogCaptureFixture) -> None:
    exporter = ScriptedExporter(*[ExportResult.failure("HTTP 401: Unauthorized")] * 20, max_batch=1)
    evlog.configure(exporters=[exporter], flush_interval=0.05)
    for _ in range(20):
        evlog.log_event("e")
    assert evlog.flush(5) is False  # every event was refused
    lines = [r for r in caplog.records if r.name == "evlog" and "failed" in r.getMessage()]
    assert len(lines) == 1
    assert "HTTP 401" in lines[0].getMessage()
    evlog.shutdown()
    assert any("19 more" in r.getMessage() for r in caplog.records if r.name == "evlog")


def test_log_event_after_shutdown_is_a_counted_no_op(caplog: pytest.LogCaptureFixture) -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory])
    evlog.shutdown()
    evlog.log_event("late")
    evlog.log_event("later")
    assert memory.events == []
    assert evlog.stats()["memory"].dropped == {"after_shutdown": 2}
    assert len([r for r in caplog.records if "after evlog.shutdown()" in r.getMessage()]) == 1


def test_shutdown_delivers_what_is_queued_and_closes_exporters() -> None:
    exporter = ScriptedExporter()
    evlog.configure(exporters=[exporter], flush_interval=60)
    for i in range(3):
        evlog.log_event("e", data={"i": i})
    assert evlog.shutdown(timeout=5)
    assert exporter.delivered() == ["e", "e", "e"]
    assert exporter.shutdown_calls == 1


def test_the_same_event_object_goes_to_every_exporter() -> None:
    first, second = MemoryExporter(), MemoryExporter()
    evlog.configure(exporters=[first, second], flush_interval=0.05)
    evlog.log_event("shared")
    assert evlog.flush(5)
    assert first.events[0] is second.events[0]
    assert set(evlog.stats().exporters) == {"memory", "memory#2"}


def test_before_send_can_scrub_drop_and_fail_safely() -> None:
    def scrub(event: evlog.Event) -> evlog.Event | None:
        if event.name == "drop-me":
            return None
        if event.name == "explode":
            raise ValueError("processor bug")
        return __import__("attrs").evolve(event, data={k: v for k, v in event.data.items() if k != "password"})

    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05, before_send=[scrub])
    evlog.log_event("login", data={"user": "alice", "password": "hunter2"})
    evlog.log_event("drop-me")
    evlog.log_event("explode", data={"password": "hunter2"})
    assert evlog.flush(5) is False  # the processor's failure lost an event (a deliberate None does not count)
    assert [(e.name, e.data) for e in memory.events] == [("login", {"user": "alice"})]
    assert evlog.stats()["memory"].dropped == {"before_send": 1, "processor_error": 1}


def test_sample_rate_keeps_a_fraction_and_counts_the_rest() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05, sample_rate=0.25)
    for _ in range(2000):
        evlog.log_event("sampled")
    assert evlog.flush(5)
    kept = len(memory.events)
    assert 350 < kept < 650
    assert evlog.stats().sampled_out == 2000 - kept


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_fresh_workers_and_the_parent_is_unaffected(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "child.jsonl"
    parent = MemoryExporter()
    evlog.configure(exporters=[parent], flush_interval=0.05)
    evlog.log_event("before fork")
    assert evlog.flush(5)
    evlog.log_event("queued in parent at fork")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            evlog.configure(exporters={"jsonl": {"path": str(out)}}, flush_interval=0.05)
            evlog.log_event("from child")
            code = 0 if evlog.flush(5) else 2
            evlog.shutdown(2)
        finally:
            os._exit(code)
    evlog.log_event("parent after fork")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert evlog.flush(5)
    assert [e.name for e in parent.events] == ["before fork", "queued in parent at fork", "parent after fork"]
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and '"name":"from child"' in lines[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_log_with_the_inherited_configuration(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "both.jsonl"
    evlog.configure(exporters={"jsonl": {"path": str(out)}}, flush_interval=0.05)
    evlog.log_event("parent")
    assert evlog.flush(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            evlog.log_event("child")
            code = 0 if evlog.flush(5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    names = [line.split('"name":"')[1].split('"')[0] for line in out.read_text().splitlines()]
    assert sorted(names) == ["child", "parent"]


def test_a_process_exits_within_the_shutdown_timeout_when_the_backend_hangs(tmp_path: object) -> None:
    import socket
    import subprocess

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    script = f"""
import socket, evlog
from evlog import Exporter, ExportResult
class Hang(Exporter):
    name = "hang"
    def export(self, batch):
        s = socket.create_connection(("127.0.0.1", {listener.getsockname()[1]}))
        s.recv(1)
        return ExportResult.success()
evlog.configure(exporters=[Hang()], flush_interval=0.05, shutdown_timeout=1.0)
evlog.log_event("e")
evlog.flush(0.3)
"""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    listener.close()
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 5.0
    assert "shutdown" in proc.stderr  # the loss is reported, not silent


def test_a_routing_pass_ends_even_if_the_intake_never_empties() -> None:
    from collections import deque

    from evlog._client import Client
    from evlog._config import load_config

    class EndlessIntake(deque):  # type: ignore[type-arg]
        """Every item taken is replaced at once, as by an app that logs faster than the router works."""

        taken = 0

        def popleft(self) -> object:
            item = super().popleft()
            EndlessIntake.taken += 1
            if EndlessIntake.taken > 1_000:
                raise AssertionError("the pass did not end")
            self.append(item)
            return item

    memory = MemoryExporter()
    router = Client(load_config({"exporters": [memory]})).router
    router.intake = EndlessIntake(("e", "info", None, None, None, None, 0, None) for _ in range(50))
    router.route_pending()
    assert EndlessIntake.taken == 50


def test_drops_are_reported_while_the_app_keeps_logging_faster_than_the_backend() -> None:
    hanging = HangingExporter()
    reported = threading.Event()
    stop = threading.Event()
    evlog.configure(exporters=[hanging], flush_interval=0.05, max_queue_size=100, on_drop=lambda drop: reported.set())

    def produce() -> None:
        while not stop.is_set():
            evlog.log_event("flood", data={"n": 1})

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        # A routing pass must end (and report) even though the intake never empties.
        assert reported.wait(10)
        assert evlog.stats()["hanging"].dropped["queue_full"] > 0
    finally:
        stop.set()
        producer.join()
        hanging.release()


def test_a_retry_plan_fits_the_deadline_or_shortens_once_for_a_final_attempt() -> None:
    from evlog._retry import RetryPolicy, plan_retry

    policy = RetryPolicy(initial_backoff=0.5, max_backoff=2.0, deadline=60.0)

    def plan(requested: float, *, shutdown: float | None = None, flush: float | None = None, final: bool = False):  # type: ignore[no-untyped-def]
        return plan_retry(
            policy,
            attempt=0,
            requested=requested,
            first_attempt=0.0,
            now=10.0,
            shutdown_deadline=shutdown,
            flush_deadline=flush,
            final=final,
        )

    assert plan(1.0) == (1.0, False)  # a Retry-After that fits is honoured
    assert plan(1.0, shutdown=20.0) == (1.0, False)
    assert plan(30.0, shutdown=14.0) == (3.0, True)  # does not fit: shortened, a second is kept for the attempt
    assert plan(30.0, shutdown=14.0, final=True) is None  # the final attempt was made: give up
    assert plan(30.0, shutdown=10.01) is None  # no time for any attempt
    assert plan(30.0, flush=12.0) == (1.0, False)  # a flush makes it hurry...
    assert plan(30.0, flush=10.01) == (30.0, False)  # ...but never give up
    assert plan(100.0) == (49.0, True)  # the batch's own deadline (first attempt + 60 s) is hard too
