"""Whole-process CPU per delivered event, for evlog's exporters (and peer clients when installed).

    python bench/bench_cpu.py                 # every client, 100,000 events, median of 5 rounds
    python bench/bench_cpu.py --events 20000 --rounds 3 --only statsig jsonl

Each client runs in a fresh subprocess, pointed at a loopback sink (``bench/sink.py``, another process that
answers 200 at once), so its CPU figure is the client's own: user + sys of the process from before the first
event to the moment every event was delivered. "app" is the share spent on the calling thread
(``time.thread_time``). Peers (statsig, posthog, segment, mixpanel, the OpenTelemetry SDK) come from the
``bench`` extra; a peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARMUP = 200

# Each snippet defines setup(url) -> None, send(i) -> None, finish() -> int (events delivered).
EVENT = "{'plan': 'pro', 'amount': 42, 'items': ['a', 'b'], 'ok': True}"

CLIENTS: dict[str, str] = {
    "evlog statsig": f"""
        import evlog
        from evlog.exporters.statsig import StatsigExporter
        def setup(url):
            global ex
            ex = StatsigExporter(api_key="secret-bench", endpoint=url + "/v1/log_event")
            evlog.configure(exporters=[ex], max_queue_size=200_000, handle_signals=False)
        def send(i):
            evlog.log_event("checkout", data={EVENT}, user=USER)
        def finish():
            evlog.flush(120)
            sent = sum(s.sent for s in evlog.stats().exporters.values())
            evlog.shutdown(5)
            return sent
        USER = evlog.User(id="u1", email="a@example.com")
    """,
    "evlog coveo": f"""
        import evlog
        from evlog.exporters.coveo import CoveoExporter
        def setup(url):
            ex = CoveoExporter(endpoint=url + "/rest/ua/v15/analytics/custom", access_token="xx-bench")
            evlog.configure(exporters=[ex], max_queue_size=200_000, handle_signals=False)
        def send(i):
            evlog.log_event("checkout", data={EVENT}, user=USER)
        def finish():
            evlog.flush(120)
            sent = sum(s.sent for s in evlog.stats().exporters.values())
            evlog.shutdown(5)
            return sent
        USER = evlog.User(id="u1", email="a@example.com")
    """,
    "evlog jsonl": f"""
        import evlog, tempfile, os
        def setup(url):
            path = os.path.join(tempfile.mkdtemp(), "e.jsonl")
            evlog.configure(exporters={{"jsonl": {{"path": path}}}}, max_queue_size=200_000, handle_signals=False)
        def send(i):
            evlog.log_event("checkout", data={EVENT}, user=USER)
        def finish():
            evlog.flush(120)
            sent = sum(s.sent for s in evlog.stats().exporters.values())
            evlog.shutdown(5)
            return sent
        USER = evlog.User(id="u1", email="a@example.com")
    """,
    "evlog otel": f"""
        import os, evlog
        def setup(url):
            os.environ["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] = url + "/v1/logs"
            os.environ["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"] = "http/protobuf"
            evlog.configure(exporters=["otel"], max_queue_size=200_000, handle_signals=False)
        def send(i):
            evlog.log_event("checkout", data={EVENT}, user=USER)
        def finish():
            evlog.flush(120)
            sent = sum(s.sent for s in evlog.stats().exporters.values())
            evlog.shutdown(5)
            return sent
        USER = evlog.User(id="u1", email="a@example.com")
    """,
    "statsig (legacy python client)": f"""
        from statsig import statsig, StatsigUser, StatsigEvent, StatsigOptions
        def setup(url):
            statsig.initialize("secret-bench", StatsigOptions(api=url + "/v1", disable_diagnostics=True,
                                                             local_mode=False, init_timeout=1))
        def send(i):
            statsig.log_event(StatsigEvent(USER, "checkout", metadata={EVENT}))
        def finish():
            statsig.shutdown()
            return N
        USER = StatsigUser(user_id="u1", email="a@example.com")
    """,
    "opentelemetry sdk (batch + otlp/http)": f"""
        import logging
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        def setup(url):
            global provider, logger
            provider = LoggerProvider()
            exporter = OTLPLogExporter(endpoint=url + "/v1/logs")
            # A queue as large as the other clients' (the default 2,048 drops most of a burst).
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=200_000))
            logger = provider.get_logger("bench")
        def send(i):
            from opentelemetry._logs import LogRecord
            logger.emit(LogRecord(body="checkout", attributes={EVENT}))
        def finish():
            provider.force_flush(60000)
            provider.shutdown()
            return N
    """,
    "posthog": f"""
        import posthog
        def setup(url):
            global client
            client = posthog.Posthog("phc_bench", host=url, max_queue_size=200_000)
        def send(i):
            client.capture(distinct_id="u1", event="checkout", properties={EVENT})
        def finish():
            client.flush(); client.shutdown()
            return N
    """,
    "segment": f"""
        import segment.analytics as analytics
        def setup(url):
            global client
            client = analytics.Client("bench-key", host=url, max_queue_size=200_000)
        def send(i):
            client.track("u1", "checkout", {EVENT})
        def finish():
            client.flush(); client.shutdown()
            return N
    """,
    "mixpanel": f"""
        from mixpanel import Mixpanel, Consumer, BufferedConsumer
        def setup(url):
            global mp, consumer
            host = url.split("://", 1)[1]
            # Buffered (50 events per request), as a server app would use it; the plain Consumer posts each event.
            consumer = BufferedConsumer(events_url=url + "/track", api_host=host)
            mp = Mixpanel("bench-token", consumer=consumer)
        def send(i):
            mp.track("u1", "checkout", {EVENT})
        def finish():
            consumer.flush()
            return N
    """,
}

RUNNER = """
import json, resource, sys, time
N = int(sys.argv[2])
{snippet}
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
setup(sys.argv[1])
for i in range(200):
    send(i)
finish_warm = None
start = cpu(); app = time.thread_time()
for i in range(N):
    send(i)
app = time.thread_time() - app
delivered = finish()
total = cpu() - start
print(json.dumps({{"cpu_us": total / N * 1e6, "app_us": app / N * 1e6, "delivered": delivered}}))
"""


def start_sink() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "sink.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def run_client(name: str, url: str, events: int) -> dict[str, float] | str:
    code = RUNNER.format(snippet=textwrap.dedent(CLIENTS[name]))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    try:
        done = subprocess.run(
            [sys.executable, fh.name, url, str(events)], capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        os.unlink(fh.name)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"did not run: {last[:120]}"
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    with urllib.request.urlopen(url + "/_count", timeout=10) as reply:  # what reached the sink (after warm-up)
        result["sink_events"] = json.loads(reply.read())["checkout"] - WARMUP
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="substrings of client names")
    args = parser.parse_args()
    names = [n for n in CLIENTS if not args.only or any(s in n for s in args.only)]
    sink, url = start_sink()
    try:
        rows = []
        for name in names:
            runs = []
            note = ""
            for _ in range(args.rounds):
                got = run_client(name, url, args.events)
                if isinstance(got, str):
                    note = got
                    break
                runs.append(got)
            if not runs:
                rows.append((name, None, None, note))
                print(f"{name:40s} {note}", flush=True)
                continue
            cpu = statistics.median(r["cpu_us"] for r in runs)
            app = statistics.median(r["app_us"] for r in runs)
            lost = min(r["delivered"] for r in runs) < args.events
            seen = min(r["sink_events"] for r in runs)
            remote = "jsonl" not in name
            if remote and 0 < seen < args.events:  # CPU per event that arrived, not per event logged
                cpu = cpu * args.events / seen
            if remote and seen < args.events:  # a client that says it delivered, but the sink saw less
                lost = True
            rows.append((name, cpu, app, "NOT ALL DELIVERED" if lost else ""))
            print(
                f"{name:40s} {cpu:7.1f} us/delivered event   app thread {app:5.1f} us   "
                f"sink saw {seen if remote else '-'}   {rows[-1][3]}",
                flush=True,
            )
    finally:
        sink.kill()
        sink.wait()


if __name__ == "__main__":
    main()
