"""Per-call cost of ``log_event`` in CPU instructions, counted by valgrind's callgrind: repeatable where wall
time is noisy (shared or virtual machines).

    python bench/bench_instructions.py

Each case runs twice in a fresh interpreter, with 1,000 and with 21,000 calls; the difference divided by
20,000 is the cost of one call, start-up excluded. The hot path runs alone (no worker threads: the router's
work is not on the app thread), with the garbage collector on, as in an app.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap

#: The background path per event, on one thread (no router, worker or socket): building the Event from the
#: queued tuple, and each exporter's encoding of a batch of 1,000 (with gzip for Statsig).
BACKGROUND = """
import gzip
from evlog._accounting import Reporter
from evlog._build import materialize
from evlog._serialize import event_wire
from evlog.exporters._result import ExportOutcomes
from evlog.exporters.statsig import StatsigExporter
from evlog import Batch, User
rep = Reporter(None)
user = User(id="u1", email="a@example.com")
raw = ("checkout", "info", None, None, None, {"plan": "pro", "amount": 42, "items": ["a", "b"], "ok": True},
       1764960000000000000, (None, user, None, None, None, None))
statsig = StatsigExporter(api_key="secret-bench", endpoint="http://127.0.0.1:9/v1/log_event")
def batches(n, encode):  # batches of 1,000 built and let go, as the pipeline does (no growing heap for the GC)
    for _ in range(n // 1000):
        encode([materialize(raw, rep) for _ in range(1000)])
def jsonl(chunk):
    out = ExportOutcomes(chunk)
    b"\\n".join(line for _e, line in out.encode(chunk, event_wire))
def to_statsig(chunk):
    out = ExportOutcomes(chunk)
    for _events, body in statsig._requests(out, out.prepare(chunk, statsig._wire)):
        gzip.compress(body, compresslevel=6, mtime=0)
"""

CASES = {
    "deque.append(dict) [floor]": "a = dq.append\nfor i in range(N): a({'name': 'signup', 'plan': i})",
    "evlog.log_event(name, data=...)": "for i in range(N): log_event('signup', data={'plan': i})",
    "evlog.log_event(name)": "for i in range(N): log_event('signup')",
    "evlog.log_event(name), context bound": "bind(user=User(id='u-42'), data={'region': 'eu'})\n"
    "for i in range(N): log_event('signup')",
    "evlog.log_event(name, data=...), context bound": "bind(user=User(id='u-42'), data={'region': 'eu'})\n"
    "for i in range(N): log_event('signup', data={'plan': i})",
    "background: build the Event": BACKGROUND + "batches(N, len)",
    "background: build + jsonl lines": BACKGROUND + "batches(N, jsonl)",
    "background: build + statsig body + gzip": BACKGROUND + "batches(N, to_statsig)",
}

PRELUDE = """
import collections, sys
from evlog import _intake, bind, User
N = int(sys.argv[1])
dq = collections.deque()
gate = _intake._gate
gate.queue = dq; gate.limit = 10**9; gate.wake_at = 10**8; gate.wake = lambda: None
log_event = _intake.log_event
def run():
{body}
run()
"""


def instructions(body: str, calls: int) -> int:
    code = PRELUDE.format(body=textwrap.indent(body, "    "))
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code, str(calls)],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"Collected : ([\d,]+)", out)
    assert match, out
    return int(match.group(1).replace(",", ""))


def main() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    costs = {label: (instructions(body, 21_000) - instructions(body, 1_000)) / 20_000 for label, body in CASES.items()}
    floor = costs["deque.append(dict) [floor]"]
    for label, cost in costs.items():
        print(f"{label:<42} {cost:8.0f} instructions per call   {cost / floor:5.2f}x floor")


if __name__ == "__main__":
    main()
