"""The highest steady rate with zero drops, at default settings, to jsonl and to Statsig (loopback sink).

    python bench/bench_rate.py                  # both exporters, 3 s per trial
    python bench/bench_rate.py --only jsonl --seconds 5

The app thread logs at a fixed rate (a burst every 10 ms) for a few seconds, then flushes; a trial passes
when every event was delivered and nothing was dropped. The rate is found by bisection between 5,000 and
400,000 events/s. Each trial runs in a fresh process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

TRIAL = """
import os, sys, tempfile, time, evlog
rate, seconds, kind, url = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
if kind == "jsonl":
    evlog.configure(exporters={"jsonl": {"path": os.path.join(tempfile.mkdtemp(), "e.jsonl")}}, handle_signals=False)
else:
    from evlog.exporters.statsig import StatsigExporter
    evlog.configure(exporters=[StatsigExporter(api_key="secret-bench", endpoint=url + "/v1/log_event")],
                    handle_signals=False)
user = evlog.User(id="u1", email="a@example.com")
data = {"plan": "pro", "amount": 42, "items": ["a", "b"], "ok": True}
tick = 0.01
per_tick = rate * tick
start = time.monotonic()
owed = 0.0
n = 0
while (now := time.monotonic()) - start < seconds:
    owed += per_tick
    while owed >= 1:
        evlog.log_event("checkout", data=data, user=user)
        owed -= 1
        n += 1
    behind = start + (n / rate) - time.monotonic()
    if behind > 0:
        time.sleep(behind)
achieved = n / (time.monotonic() - start)
ok = evlog.flush(30)
stats = evlog.stats()
dropped = sum(sum(s.dropped.values()) for s in stats.exporters.values())  # losses before fan-out included
sent = sum(s.sent for s in stats.exporters.values())
evlog.shutdown(5)
print(int(ok and dropped == 0 and sent == n and achieved >= 0.97 * rate), n, sent, dropped, int(achieved))
"""


def trial(rate: float, seconds: float, kind: str, url: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", TRIAL, str(rate), str(seconds), kind, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    fields = (done.stdout.strip().splitlines() or ["0"])[-1].split()
    print(f"  {kind:8s} {rate:9,.0f}/s: {'ok' if fields[0] == '1' else 'FAIL'} {' '.join(fields[1:])}", flush=True)
    return fields[0] == "1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", nargs="*", default=["jsonl", "statsig"])
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, str(HERE / "sink.py")], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    url = f"http://127.0.0.1:{int(sink.stdout.readline())}"
    try:
        for kind in args.only:
            low, high = 5_000.0, 400_000.0
            for _ in range(7):
                mid = (low * high) ** 0.5
                if trial(mid, args.seconds, kind, url):
                    low = mid
                else:
                    high = mid
            print(f"{kind}: highest steady rate with zero drops about {low:,.0f} events/s", flush=True)
    finally:
        sink.kill()
        sink.wait()


if __name__ == "__main__":
    main()
