"""The spool's extra CPU per event, printed as ratios against a baseline measured in the same run.

    python bench/bench_spool.py                  # process CPU time (about half a minute)
    python bench/bench_spool.py --instructions   # also callgrind instruction counts (valgrind, slower)

The loop is what the router and a worker do for 100,000 events in batches of 500: the baseline walks the
batch the way the pipeline does (a list of ``(event, exporters)`` pairs and a list of their ids); the spooled
loop adds ``Spool.append`` and ``Spool.done`` for one and for three exporters. CPU is process time (every
thread, sqlite's own work included), the best of several repetitions; the figure that matters is the
difference, spooled minus baseline, per event. Events are built before timing: building them is the router's
cost with or without the spool.

Measured on the development VM (Python 3.11.7, sqlite 3.40.1), where building one Event costs 3.4 us:
extra CPU per event 2.5 us with 1 exporter, 2.9 us with 3 (encode_event is 2.0 us of it); callgrind:
33,600 extra instructions per event with 1 exporter, 39,900 with 3 (building an Event: about 35,000).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from evlog._event import Event, User
from evlog._spool import Spool, encode_event

BATCH = 500


def make_events(n: int) -> list[Event]:
    now = _dt.datetime.now(_dt.timezone.utc)
    user = User(id="u-42", country="FR")
    return [
        Event(
            name="signup",
            timestamp=now,
            event_id=uuid.uuid4().hex,
            data={"plan": i, "source": "landing-page", "ok": True},
            user=user if i % 2 else None,
        )
        for i in range(n)
    ]


def baseline(events: list[Event], names: tuple[str, ...]) -> None:
    sink: list[object] = []
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        items = [(e, names) for e in batch]
        ids = [e.event_id for e in batch]
        sink.append(items)
        for _name in names:
            sink.append(ids)
        sink.clear()


def spooled(events: list[Event], names: tuple[str, ...], directory: str) -> None:
    spool = Spool.open(directory, max_bytes=1 << 30, max_age=3600, warn=print)
    assert spool is not None
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        items = [(e, names) for e in batch]
        ids = [e.event_id for e in batch]
        assert spool.append(items) == len(batch)
        for name in names:
            spool.done(name, ids)
    assert spool.stats()["events"] == 0
    spool.close()


def encode_only(events: list[Event], names: tuple[str, ...]) -> None:
    for e in events:
        encode_event(e)


def cpu_per_event_us(fn: object, repeats: int, *args: object) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(*args)  # type: ignore[operator]
        best = min(best, time.process_time() - start)
    return best / len(args[0]) * 1e6  # type: ignore[arg-type]


def cpu_figures(total: int, repeats: int) -> None:
    start = time.process_time()
    events = make_events(total)
    build = (time.process_time() - start) / total * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        base1 = cpu_per_event_us(baseline, repeats, events, ("a",))
        base3 = cpu_per_event_us(baseline, repeats, events, ("a", "b", "c"))
        enc = cpu_per_event_us(encode_only, repeats, events, ("a",))
        sp1 = cpu_per_event_us(spooled, repeats, events, ("a",), tmp)
        sp3 = cpu_per_event_us(spooled, repeats, events, ("a", "b", "c"), tmp)
    print(f"{total:,} events, batches of {BATCH}, process CPU, best of {repeats}")
    for label, base, spool in (("1 exporter ", base1, sp1), ("3 exporters", base3, sp3)):
        print(f"  baseline, {label}          {base:6.2f} us/event")
        print(f"  spool,    {label}          {spool:6.2f} us/event   extra {spool - base:5.2f} us", end="")
        print(f"   ratio {spool / base:5.1f}x")
    print(f"  of which encode_event          {enc:6.2f} us/event")
    print(f"  for scale: building the Event  {build:6.2f} us/event (the router's cost with or without a spool)")


INSTR = """
import sys, tempfile
sys.path.insert(0, {bench!r})
import bench_spool as b
n = int(sys.argv[1])
events = b.make_events(n)
names = tuple(sys.argv[2].split(","))
if sys.argv[3] == "spool":
    with tempfile.TemporaryDirectory() as tmp:
        b.spooled(events, names, tmp)
else:
    b.baseline(events, names)
"""


VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def instructions(n: int, names: str, mode: str) -> int:
    code = INSTR.format(bench=str(__import__("pathlib").Path(__file__).parent))
    out = subprocess.run(
        [*VALGRIND, sys.executable, "-c", code, str(n), names, mode],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"Collected : ([\d,]+)", out)
    assert match, out
    return int(match.group(1).replace(",", ""))


def instruction_figures() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    small, large = 1_000, 11_000
    print(f"callgrind, instructions per event (difference of {large:,} and {small:,} events: start-up excluded)")
    print("  here the baseline includes building each Event, so the ratio is against the router's own work")
    for names in ("a", "a,b,c"):
        cost = {}
        for mode in ("baseline", "spool"):
            cost[mode] = (instructions(large, names, mode) - instructions(small, names, mode)) / (large - small)
        extra = cost["spool"] - cost["baseline"]
        print(
            f"  {len(names.split(',')):d} exporter(s): baseline {cost['baseline']:8.0f}   spool {cost['spool']:8.0f}"
            f"   extra {extra:8.0f}   ratio {cost['spool'] / cost['baseline']:5.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args()
    cpu_figures(args.events, args.repeats)
    if args.instructions:
        instruction_figures()


if __name__ == "__main__":
    main()
