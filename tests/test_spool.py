"""The durable spool on real files: codec, bookkeeping, limits, permissions, failing disks, and adoption of the
files of dead processes (real subprocesses, real SIGKILL)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import queue
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evlog import ExceptionInfo, Level, TraceContext, User
from evlog import _spool as spool_mod
from evlog._event import Event
from evlog._spool import SUFFIX, Spool, adopt_orphans, decode_event, encode_event

T0 = _dt.datetime(2026, 12, 5, 20, 0, 0, 123456, tzinfo=_dt.timezone.utc)


def make_event(i: int = 0, **fields: Any) -> Event:
    fields.setdefault("event_id", str(uuid.uuid4()))
    fields.setdefault("data", {"i": i})
    return Event(name=f"ev{i}", timestamp=T0, **fields)


class Warnings(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def warnings_() -> Warnings:
    return Warnings()


@pytest.fixture
def spools(tmp_path: Path, warnings_: Warnings) -> Iterator[list[Spool]]:
    """Opened through ``open_spool``; all closed at the end (closing twice is harmless)."""
    opened: list[Spool] = []
    yield opened
    for spool in opened:
        spool.close()


def open_spool(spools: list[Spool], directory: Path, warn: Warnings, **limits: Any) -> Spool:
    limits.setdefault("max_bytes", 1 << 30)
    limits.setdefault("max_age", 3600.0)
    spool = Spool.open(directory, warn=warn, **limits)
    assert spool is not None, warn
    spools.append(spool)
    return spool


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


# -------------------------------------------------------------------------------------------------- codec

FULL_EXCEPTION = ExceptionInfo(
    exception_type="ValueError",
    exception_msg="bad",
    stacktrace=("Traceback", '  File "app.py", line 3'),
    source_file="app.py",
    source_line=3,
    source_function="main",
    cause=ExceptionInfo("KeyError", "'k'"),
    context=ExceptionInfo("OSError", "disk"),
    exceptions=(ExceptionInfo("TypeError"), ExceptionInfo("IndexError", "i", cause=ExceptionInfo("E"))),
)


def test_codec_round_trips_every_field() -> None:
    event = Event(
        name="checkout",
        timestamp=T0,
        event_id="id-1",
        level=Level.ERROR,
        category="shop",
        labels=("a", "b"),
        message="hi \udc80 é",  # a lone surrogate survives too
        data={"n": 1, "f": 1.5, "b": True, "none": None, "l": [1, "x", {"d": []}], "big": 2**80},
        user=User(id="u", email="e@x", custom={"k": [1]}, custom_ids={"stableID": "s"}, private_attributes={"p": 1}),
        session_id="s-1",
        value=9.99,
        exception=FULL_EXCEPTION,
        trace=TraceContext(trace_id=2**127 + 5, span_id=2**63 + 1, trace_flags=1),
    )
    back = decode_event(encode_event(event))
    assert back == event
    assert back.timestamp.tzinfo is not None and back.timestamp.utcoffset() == _dt.timedelta(0)
    assert type(back.level) is Level and type(back.data["f"]) is float and type(back.data["n"]) is int


def test_codec_is_json_and_rejects_other_bodies() -> None:
    assert isinstance(json.loads(encode_event(make_event())), list)
    for body in (b"not json", b"{}", b"[99]", b'{"py/object": "os.system"}'):
        with pytest.raises((ValueError, TypeError, KeyError)):
            decode_event(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
opt_text = st.none() | st.text(max_size=8)
exceptions = st.deferred(
    lambda: st.builds(
        ExceptionInfo,
        exception_type=st.text(max_size=8),
        exception_msg=st.text(max_size=8),
        stacktrace=st.lists(st.text(max_size=8), max_size=2).map(tuple),
        source_file=opt_text,
        source_line=st.none() | st.integers(0, 10**6),
        source_function=opt_text,
        cause=st.none() | exceptions,
        context=st.none() | exceptions,
        exceptions=st.lists(exceptions, max_size=2).map(tuple),
    )
)
events = st.builds(
    Event,
    name=st.text(),
    timestamp=st.datetimes(timezones=st.just(_dt.timezone.utc)),
    event_id=st.text(min_size=1),
    level=st.sampled_from(Level),
    category=opt_text,
    labels=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    message=opt_text,
    data=st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    user=st.none()
    | st.builds(
        User,
        id=opt_text,
        email=opt_text,
        country=opt_text,
        custom=st.dictionaries(st.text(max_size=5), json_values, max_size=2),
        custom_ids=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        private_attributes=st.dictionaries(st.text(max_size=5), json_values, max_size=2),
    ),
    session_id=opt_text,
    value=st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    exception=st.none() | exceptions,
    trace=st.none()
    | st.builds(TraceContext, st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1), st.integers(0, 255)),
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_codec_round_trip_property(event: Event) -> None:
    assert decode_event(encode_event(event)) == event


distinct_ids = st.lists(events, min_size=1, max_size=4).map(
    lambda batch: [attrs.evolve(e, event_id=str(i)) for i, e in enumerate(batch)]
)


@settings(max_examples=50, deadline=None)
@given(distinct_ids)
def test_spool_round_trip_property(batch: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool.open(directory, max_bytes=1 << 30, max_age=3600, warn=pytest.fail)
        assert spool is not None
        assert spool.append([(e, ("a",)) for e in batch]) == len(batch)
        assert [e for _, e in spool.pending("a", limit=10)] == batch
        spool.close()


# ----------------------------------------------------------------------------------------- bookkeeping


def test_append_then_pending_in_log_order(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    batch = [make_event(i) for i in range(10)]
    assert spool.append([(e, ("a",)) for e in batch]) == 10
    got = spool.pending("a", limit=4)
    assert [e for _, e in got] == batch[:4]
    rest = spool.pending("a", limit=100, after=got[-1][0])
    assert [e for _, e in rest] == batch[4:]
    assert spool.pending("never-used", limit=10) == []
    assert spool.stats()["events"] == 10 and not warnings_


def test_row_goes_only_when_every_exporter_is_done(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    batch = [make_event(i) for i in range(3)]
    spool.append([(e, ("a", "b")) for e in batch])
    ids = [e.event_id for e in batch]
    spool.done("a", ids)
    assert spool.stats()["events"] == 3
    assert [e for _, e in spool.pending("b", limit=10)] == batch
    assert spool.pending("a", limit=10) == []
    spool.done("a", ids)  # twice: no effect
    spool.done("b", ids[:2] + ids[:2])  # an id given twice counts once
    assert spool.stats()["events"] == 1
    spool.done("b", ids[2:])
    assert spool.stats() | {"bytes": 0} == {
        "events": 0,
        "bytes": 0,
        "not_persisted": 0,
        "dropped_by_limits": 0,
        "unreadable": 0,
    }
    assert spool.stats()["bytes"] == 0


def test_done_finds_events_that_left_memory_early(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    early = [str(uuid.uuid4()) for _ in range(100)]
    spool.append([(make_event(i, event_id=eid), ("a", "b")) for i, eid in enumerate(early)])  # not kept
    later = [make_event(i) for i in range(5000)]  # enough to sweep the live map
    spool.append([(e, ("a",)) for e in later])
    assert spool._live.unmapped == 100  # the early ones are found by the slow path
    spool.done("a", early)
    assert spool.stats()["events"] == 5100
    spool.done("b", early)
    assert spool.stats()["events"] == 5000
    spool.done("a", [e.event_id for e in later])
    assert spool.stats()["events"] == 0 and spool.stats()["bytes"] == 0


def test_unreadable_events_are_counted_and_dropped(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    spool.append([(make_event(i), ("a",)) for i in range(7)])
    spool._conn.execute("UPDATE batches SET body = CAST('[1, 2' AS BLOB)")
    assert spool.pending("a", limit=10) == []
    assert spool.stats()["unreadable"] == 7 and spool.stats()["events"] == 0
    assert len(warnings_) == 1 and "unreadable" in warnings_[0]


def test_router_and_workers_share_one_spool(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path, warnings_)
    batches = [[make_event(i) for i in range(j * 100, j * 100 + 100)] for j in range(20)]
    handed: queue.Queue[list[Event] | None] = queue.Queue()

    def worker() -> None:
        while (batch := handed.get()) is not None:
            spool.done("a", [e.event_id for e in batch])

    thread = threading.Thread(target=worker, name="spool-test-worker")
    thread.start()
    for batch in batches:  # this thread is the router
        assert spool.append([(e, ("a",)) for e in batch]) == 100
        handed.put(batch)
    handed.put(None)
    thread.join()
    assert spool.stats()["events"] == 0 and spool.pending("a", limit=10) == []


def test_an_event_that_cannot_be_encoded_is_counted(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    bad = make_event(1, data={"x": object()})
    assert spool.append([(make_event(0), ("a",)), (bad, ("a",)), (make_event(2), ("a",))]) == 2
    assert spool.stats()["not_persisted"] == 1
    assert len(warnings_) == 1


# ------------------------------------------------------------------------------------------------ limits


def test_over_max_bytes_the_oldest_are_dropped_and_returned(
    tmp_path: Path, spools: list[Spool], warnings_: Warnings
) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    batch = [make_event(i) for i in range(100)]
    for start in range(0, 100, 10):  # limits drop whole appends, the oldest first
        spool.append([(e, ("a", "b")) for e in batch[start : start + 10]])
    spool.done("b", [e.event_id for e in batch[:5]])
    spool.max_bytes = spool.stats()["bytes"] // 2
    dropped = spool.enforce_limits()
    assert [e for _, e, _ in dropped] == batch[: len(dropped)]
    assert [seq for seq, _, _ in dropped] == list(range(1, len(dropped) + 1))
    assert len(dropped) in (50, 60)
    assert dropped[0][2] == frozenset({"a"}) and dropped[-1][2] == frozenset({"a", "b"})
    stats = spool.stats()
    assert stats["bytes"] <= spool.max_bytes and stats["dropped_by_limits"] == len(dropped)
    assert stats["events"] == 100 - len(dropped)
    assert spool.enforce_limits() == []
    assert [e for _, e in spool.pending("a", limit=100)] == batch[len(dropped) :]


def test_older_than_max_age_are_dropped(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_, max_age=60.0)
    old = [make_event(i) for i in range(3)]
    spool.append([(e, ("a",)) for e in old])
    created = spool._conn.execute("SELECT max(created) FROM batches").fetchone()[0]
    young = make_event(9)
    spool.append([(young, ("a",))])
    spool._conn.execute("UPDATE batches SET created = created + 1000 WHERE seq = (SELECT max(seq) FROM batches)")
    assert spool.enforce_limits(now=created + 30) == []
    dropped = spool.enforce_limits(now=created + 61)
    assert [(e, names) for _, e, names in dropped] == [(e, frozenset({"a"})) for e in old]
    assert [e for _, e in spool.pending("a", limit=10)] == [young]
    assert spool.stats()["dropped_by_limits"] == 3


# ------------------------------------------------------------------------------------- files and close


def test_directory_0700_and_files_0600(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    directory = tmp_path / "a" / "spool"
    spool = open_spool(spools, directory, warnings_)
    spool.append([(make_event(), ("a",))])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert {p.name.split(SUFFIX)[1] for p in files} == {"", "-wal", "-shm", ".lock"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), files
    assert re.fullmatch(rf"[A-Za-z0-9._-]+-{os.getpid()}-[0-9a-f]{{8}}\{SUFFIX}", spool.path.name)


def test_group_writable_directory_is_refused(tmp_path: Path, warnings_: Warnings) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o770)
    assert Spool.open(directory, max_bytes=1, max_age=1, warn=warnings_) is None
    assert adopt_orphans(directory, warn=warnings_) == []
    assert len(warnings_) == 2 and "writable by group" in warnings_[0]


def test_unusable_directory_warns_and_returns_none(tmp_path: Path, warnings_: Warnings) -> None:
    # Tests may run as root, where chmod does not stop writes: a regular file in the way cannot.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert Spool.open(blocker / "spool", max_bytes=1, max_age=1, warn=warnings_) is None
    assert Spool.open(blocker, max_bytes=1, max_age=1, warn=warnings_) is None
    assert len(warnings_) == 2


def test_close_removes_an_empty_spool_and_keeps_a_pending_one(
    tmp_path: Path, spools: list[Spool], warnings_: Warnings
) -> None:
    empty = open_spool(spools, tmp_path, warnings_)
    full = open_spool(spools, tmp_path, warnings_)
    event = make_event()
    empty.append([(event, ("a",))])
    empty.done("a", [event.event_id])
    full.append([(event, ("a",))])
    empty.close()
    full.close()
    assert spool_files(tmp_path) == [full.path]
    assert {p.name for p in tmp_path.iterdir()} == {full.path.name, full.path.name + ".lock"}


# --------------------------------------------------------------------------------------- failing disks


def test_full_disk_warns_once_and_counts(
    tmp_path: Path, spools: list[Spool], warnings_: Warnings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_mod, "_RETRY_AFTER", 0.0)  # try the disk again at every append
    spool = open_spool(spools, tmp_path, warnings_)
    spool.append([(make_event(), ("a",))])
    pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, exactly as a full disk
    big = [(make_event(i, message="x" * 2000), ("a",)) for i in range(50)]
    assert spool.append(big) == 0
    assert spool.degraded
    assert spool.append(big) == 0
    assert spool.stats()["not_persisted"] == 100 and spool.stats()["events"] == 1
    assert len(warnings_) == 1 and "full" in warnings_[0]
    spool._conn.execute("PRAGMA max_page_count = 1000000")
    assert spool.append(big) == 50 and not spool.degraded  # the disk has room again
    assert len(spool.pending("a", limit=100)) == 51


def test_read_only_spool_stays_quiet_and_never_raises(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    spool = open_spool(spools, tmp_path, warnings_)
    event = make_event()
    spool.append([(event, ("a",))])
    spool._conn.execute("PRAGMA query_only = ON")  # SQLITE_READONLY on every write, even for root
    assert spool.append([(make_event(1), ("a",))]) == 0
    spool.done("a", [event.event_id])
    assert spool.enforce_limits(now=10**12) == []
    assert spool.degraded and len(warnings_) == 1
    assert spool.stats()["not_persisted"] == 1
    spool._conn.execute("PRAGMA query_only = OFF")


def test_corrupt_file_is_set_aside_with_a_warning(tmp_path: Path, warnings_: Warnings) -> None:
    garbage = tmp_path / f"host-1-dead{SUFFIX}"
    garbage.write_bytes(os.urandom(8192))
    foreign = tmp_path / f"host-2-dead{SUFFIX}"
    conn = sqlite3.connect(foreign)  # a valid sqlite file, but not a spool
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert adopt_orphans(tmp_path, warn=warnings_) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [garbage.name + ".corrupt", foreign.name + ".corrupt"]
    assert len(warnings_) == 2 and all("set aside" in w for w in warnings_)


# ------------------------------------------------------------------------------------- other processes

CHILD = """
import sys, datetime, json
from evlog._event import Event
from evlog._spool import Spool
directory, n = sys.argv[1], int(sys.argv[2])
spool = Spool.open(directory, max_bytes=1 << 30, max_age=3600, warn=print)
t = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
events = [Event(name="e", timestamp=t, event_id=f"{n}-{i}", data={"i": i}) for i in range(n)]
for start in range(0, n, 100):
    spool.append([(e, ("a", "b")) for e in events[start : start + 100]])
spool.done("a", [e.event_id for e in events[: n // 2]])
print("ready", flush=True)
sys.stdin.readline()
spool.close()
"""


def start_child(directory: Path, n: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_kill_9_then_a_new_process_delivers_the_rest_once(tmp_path: Path, warnings_: Warnings) -> None:
    proc = start_child(tmp_path, 1000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.close()
    [adopted] = adopt_orphans(tmp_path, warn=warnings_)
    assert adopted.exporters == {"a", "b"}
    delivered: dict[str, list[str]] = {"a": [], "b": []}
    for name, ids in delivered.items():
        after = 0
        while batch := adopted.pending(name, limit=64, after=after):
            ids.extend(e.event_id for _, e in batch)
            adopted.done(name, [e.event_id for _, e in batch])
            after = batch[-1][0]
    assert delivered["a"] == [f"1000-{i}" for i in range(500, 1000)]
    assert delivered["b"] == [f"1000-{i}" for i in range(1000)]
    adopted.close()
    assert list(tmp_path.iterdir()) == [] and not warnings_


def test_a_live_process_file_is_never_adopted(tmp_path: Path, spools: list[Spool], warnings_: Warnings) -> None:
    mine = open_spool(spools, tmp_path, warnings_)
    mine.append([(make_event(), ("a",))])
    proc = start_child(tmp_path, 10)
    try:
        assert adopt_orphans(tmp_path, warn=warnings_) == []
        assert len(spool_files(tmp_path)) == 2
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()  # the child closes its spool and exits
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
    [orphan] = adopt_orphans(tmp_path, warn=warnings_)  # the child's, pending for "b"
    assert orphan.path != mine.path
    orphan.close()


ADOPTER = """
import sys, json
from evlog._spool import adopt_orphans
print("waiting", flush=True)
sys.stdin.readline()
got = {}
for spool in adopt_orphans(sys.argv[1], warn=print):
    ids = []
    after = 0
    while batch := spool.pending("a", limit=50, after=after):
        ids.extend(e.event_id for _, e in batch)
        spool.done("a", [e.event_id for _, e in batch])
        after = batch[-1][0]
    got[spool.path.name] = ids
    spool.close()
print(json.dumps(got), flush=True)
"""


def test_two_processes_adopting_at_once_deliver_each_event_once(
    tmp_path: Path, spools: list[Spool], warnings_: Warnings
) -> None:
    expected: list[str] = []
    for _ in range(8):  # orphans: closed with events pending, so nobody holds their locks
        spool = open_spool(spools, tmp_path, warnings_)
        batch = [make_event(i) for i in range(200)]
        spool.append([(e, ("a",)) for e in batch])
        expected.extend(e.event_id for e in batch)
        spool.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADOPTER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "waiting\n"
    for proc in procs:  # both are past their imports: release them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    files = [name for got in results for name in got]
    delivered = [eid for got in results for ids in got.values() for eid in ids]
    assert len(files) == len(set(files)) == 8
    assert sorted(delivered) == sorted(expected)
    assert list(tmp_path.iterdir()) == []


def test_a_forked_child_does_not_release_the_parents_lock(
    tmp_path: Path, spools: list[Spool], warnings_: Warnings
) -> None:
    spool = open_spool(spools, tmp_path, warnings_)
    spool.append([(make_event(), ("a",))])
    pid = os.fork()
    if pid == 0:  # the child exits at once, closing everything it inherited
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    code = textwrap.dedent(
        """
        import sys
        from evlog._spool import adopt_orphans
        print(len(adopt_orphans(sys.argv[1], warn=print)))
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout == "0\n"
    assert spool.pending("a", limit=5) != []


def test_trim_drops_the_same_as_enforce_limits_without_reading_bodies(
    tmp_path: Path, spools: list[Spool], warnings_: Warnings
) -> None:
    spool = open_spool(spools, tmp_path / "spool", warnings_)
    batch = [make_event(i) for i in range(100)]
    for start in range(0, 100, 10):
        spool.append([(e, ("a", "b")) for e in batch[start : start + 10]])
    spool.done("b", [e.event_id for e in batch[:5]])
    spool.max_bytes = spool.stats()["bytes"] // 2
    dropped = spool.trim()
    assert [seq for seq, _, _ in dropped] == list(range(1, len(dropped) + 1))
    assert len(dropped) in (50, 60)
    assert dropped[0][1] == frozenset({"a"}) and dropped[-1][1] == frozenset({"a", "b"})
    assert not any(expired for _, _, expired in dropped)
    stats = spool.stats()
    assert stats["bytes"] <= spool.max_bytes and stats["events"] == 100 - len(dropped)
    assert [e for _, e in spool.pending("a", limit=100)] == batch[len(dropped) :]
    spool.done("a", [e.event_id for e in batch[len(dropped) :]])
    spool.done("b", [e.event_id for e in batch[len(dropped) :]])
    assert spool.stats()["events"] == 0
