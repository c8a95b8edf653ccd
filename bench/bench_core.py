"""Benchmarks for evlog's core, printed as ratios against baselines measured in the same run.

    python bench/bench_core.py            # everything (about a minute)
    python bench/bench_core.py --quick    # fewer repetitions

What it measures:
1. Per-call cost of ``log_event`` with one and with three exporters (workers running, backend a no-op), beside
   two baselines: appending a small dict to a ``collections.deque`` (the floor) and stdlib
   ``logging.getLogger().info()`` into a ``QueueHandler``. Calls are timed in bursts that fit the buffer, so
   the figure is the app thread's cost, not the cost of dropping.
2. End-to-end throughput: events per second from ``log_event`` to an exporter that counts them.
3. Memory while the backend is down: what the full buffers hold (traced), then the process's growth over
   1,000,000 more events (bounded means no more than the buffers' worth).
4. Shutdown with a backend that accepts connections and never answers: the time ``shutdown(timeout=1)`` and a
   whole process exit take.
5. ``import evlog`` does not import requests or opentelemetry.
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import logging.handlers
import queue
import resource
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import evlog
from evlog import Batch, Exporter, ExportResult


class NullExporter(Exporter):
    name = "null"

    def export(self, batch: Batch) -> ExportResult:
        return ExportResult.success()


class CountingExporter(Exporter):
    name = "counting"
    default_max_batch_size = 1000

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.cond = threading.Condition()

    def export(self, batch: Batch) -> ExportResult:
        with self.cond:
            self.count += len(batch)
            self.cond.notify_all()
        return ExportResult.success()


class DownExporter(Exporter):
    """A backend that is down: every export asks for a retry later."""

    name = "down"
    default_max_batch_size = 1000

    def export(self, batch: Batch) -> ExportResult:
        return ExportResult.retry("backend down", after=1.0)


def per_call_ns(fn: Callable[[int], None], burst: int, repeats: int, between: Callable[[], None]) -> float:
    """Median over ``repeats`` bursts of the wall time per call, in nanoseconds."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter_ns()
        fn(burst)
        samples.append((time.perf_counter_ns() - start) / burst)
        between()
    return statistics.median(samples)


def bench_calls(repeats: int) -> dict[str, float]:
    burst = 5000
    results: dict[str, float] = {}

    dq: collections.deque[dict[str, object]] = collections.deque()

    def deque_append(n: int) -> None:
        append = dq.append
        for i in range(n):
            append({"name": "signup", "plan": i})

    results["deque.append(dict) [floor]"] = per_call_ns(deque_append, burst, repeats, dq.clear)

    q: queue.Queue[logging.LogRecord] = queue.Queue()
    logger = logging.getLogger("bench")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.handlers.QueueHandler(q)
    logger.addHandler(handler)

    def drain() -> None:
        while not q.empty():
            q.get_nowait()

    def stdlib_logging(n: int) -> None:
        info = logger.info
        for i in range(n):
            info("signup %s", i)

    results["logging.info -> QueueHandler"] = per_call_ns(stdlib_logging, burst, repeats, drain)
    logger.removeHandler(handler)

    for label, exporters, bound in (
        ("evlog.log_event, 1 exporter", [NullExporter()], False),
        ("evlog.log_event, 3 exporters", [NullExporter(), NullExporter(), NullExporter()], False),
        ("evlog.log_event, 1 exporter, context bound", [NullExporter()], True),
    ):
        evlog.clear_context()
        if bound:  # what a web integration binds per request
            evlog.bind(user=evlog.User(id="u-42"), session_id="s-9", data={"route": "/checkout"})
        evlog.configure(exporters=exporters, flush_interval=0.5, max_queue_size=20_000)
        log_event = evlog.log_event
        log_event("warm-up")
        evlog.flush(5)

        def evlog_calls(n: int, log_event: Callable[..., None] = log_event) -> None:
            for i in range(n):
                log_event("signup", data={"plan": i})

        results[label] = per_call_ns(evlog_calls, burst, repeats, lambda: evlog.flush(10))
        dropped = sum(s.dropped_total for s in evlog.stats().exporters.values())
        evlog.shutdown(5)
        assert dropped == 0, f"the per-call benchmark dropped {dropped} events: the figure would be wrong"
    return results


def bench_throughput(total: int) -> float:
    exporter = CountingExporter()
    evlog.configure(exporters=[exporter], flush_interval=0.05, max_queue_size=total)
    start = time.perf_counter()
    for i in range(total):
        evlog.log_event("signup", data={"plan": i})
    with exporter.cond:
        exporter.cond.wait_for(lambda: exporter.count >= total, 120)
    elapsed = time.perf_counter() - start
    delivered = exporter.count
    evlog.shutdown(5)
    assert delivered == total, f"delivered {delivered} of {total}"
    return total / elapsed


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def bench_memory(total: int, cap: int) -> tuple[float, float, float, int]:
    """Memory while the backend is down, traced by tracemalloc (every allocation of every thread).

    Returns (peak MB over the first ``10 * cap`` events, peak MB over all ``total`` events, process RSS growth
    in MB, events dropped). Both peaks include the full buffers (the intake and the exporter's, each
    ``max_queue_size`` events): bounded memory means the second peak is no higher than the first. RSS is shown
    for reference only: freed memory is not always returned to the system.
    """
    import tracemalloc

    gc.collect()
    evlog.configure(exporters=[DownExporter()], flush_interval=0.05, max_queue_size=cap, retry_deadline=3600)
    evlog.log_event("warm-up")
    evlog.flush(0.2)
    base_rss = rss_mb()
    tracemalloc.start()
    first = cap * 10
    for i in range(first):
        evlog.log_event("signup", data={"plan": i, "note": "x" * 20})
    evlog.flush(0.5)
    early_peak = tracemalloc.get_traced_memory()[1] / 2**20
    for i in range(total - first):
        evlog.log_event("signup", data={"plan": i, "note": "x" * 20})
    evlog.flush(0.5)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    growth = rss_mb() - base_rss
    dropped = evlog.stats()["down"].dropped.get("queue_full", 0)
    evlog.shutdown(0.5)
    return early_peak, peak, growth, dropped


def hanging_listener() -> socket.socket:
    """A socket that completes TCP handshakes (backlog) but never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class HangingExporter(Exporter):
    name = "hanging"

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def export(self, batch: Batch) -> ExportResult:
        conn = socket.create_connection(("127.0.0.1", self.port))
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        conn.recv(1)  # blocks: the server never answers
        return ExportResult.success()  # pragma: no cover


def bench_shutdown() -> tuple[float, float]:
    listener = hanging_listener()
    port = listener.getsockname()[1]
    evlog.configure(exporters=[HangingExporter(port)], flush_interval=0.05)
    evlog.log_event("signup")
    evlog.flush(0.3)
    start = time.perf_counter()
    evlog.shutdown(timeout=1.0)
    in_process = time.perf_counter() - start

    script = textwrap.dedent(
        f"""
        import sys; sys.path[:0] = {sys.path[:3]!r}
        import evlog
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from bench_core import HangingExporter
        evlog.configure(exporters=[HangingExporter({port})], flush_interval=0.05, shutdown_timeout=1.0)
        evlog.log_event("signup")
        evlog.flush(0.3)
        evlog.log_event("at-exit")
        """
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    process_exit = time.perf_counter() - start
    listener.close()
    return in_process, process_exit


def heavy_imports() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, evlog; print(sorted({m.split('.')[0] for m in sys.modules}))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in ("requests", "opentelemetry", "urllib3") if f"'{name}'" in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and events")
    args = parser.parse_args()
    repeats = 7 if args.quick else 25
    logging.getLogger("evlog").setLevel(logging.ERROR)  # the memory benchmark drops on purpose

    print(f"evlog {evlog.__version__}, Python {sys.version.split()[0]}")
    print("\n1. Per-call cost (median per call over bursts of 5,000 calls)")
    calls = bench_calls(repeats)
    floor = calls["deque.append(dict) [floor]"]
    for label, ns in calls.items():
        print(f"   {label:<44} {ns:8.0f} ns   {ns / floor:5.2f}x floor")
    one = calls["evlog.log_event, 1 exporter"]
    bound = calls["evlog.log_event, 1 exporter, context bound"]
    print(f"   a bound context (user, session, data) costs {100 * (bound / one - 1):+.0f}% per call")
    stdlib = calls["logging.info -> QueueHandler"]
    print(f"   log_event is {stdlib / one:.1f}x faster than stdlib logging into a QueueHandler")

    total = 100_000 if args.quick else 300_000
    print(f"\n2. End-to-end throughput ({total:,} events to a counting exporter)")
    rate = bench_throughput(total)
    print(f"   {rate:,.0f} events/s   ({1e9 / rate / floor:.1f}x the floor's cost per event)")

    events, cap = 1_000_000, 10_000
    print(f"\n3. Memory while the backend is down ({events:,} events, max_queue_size={cap:,})")
    early_peak, peak, growth, dropped = bench_memory(events, cap)
    print(f"   peak over the first {cap * 10:,} events (buffers full): {early_peak:6.1f} MB")
    print(f"   peak over all {events:,} events:                {peak:6.1f} MB ({peak / early_peak:.2f}x)")
    print(f"   {dropped:,} events dropped, each counted as queue_full; process RSS grew {growth:.1f} MB")

    print("\n4. Shutdown with a backend that accepts connections and never answers")
    in_process, process_exit = bench_shutdown()
    print(f"   evlog.shutdown(timeout=1.0) took {in_process:.2f} s")
    print(f"   process exit with shutdown_timeout=1.0 took {process_exit:.2f} s (includes interpreter start)")

    heavy = heavy_imports()
    print(f"\n5. 'import evlog' imports heavy modules: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
