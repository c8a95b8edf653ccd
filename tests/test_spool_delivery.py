"""The durable spool end to end: overflow kept on disk, kill -9, adoption by new processes, limits, bad disks.

Real processes, a real sqlite spool in ``tmp_path``, and a Statsig fake on loopback that can be down (503)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import evlog
from evlog import Drop
from support.loopback import RecordingServer, Reply, Request
from support.statsig_fake import KEY, PATH, StatsigFake, events_of


class _Switchable:
    """A Statsig fake that answers 503 while ``down``; records the events it accepted, in arrival order."""

    def __init__(self, *, down: bool) -> None:
        self.fake = StatsigFake()
        self.down = down
        self.accepted: list[dict[str, object]] = []
        self.cond = threading.Condition()

    def __call__(self, request: Request) -> Reply:
        if self.down:
            return Reply(503, "down")
        reply = self.fake(request)
        if reply.status == 202:
            with self.cond:
                self.accepted.extend(events_of([request]))
                self.cond.notify_all()
        return reply

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, object]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.accepted) >= count, timeout), len(self.accepted)
            return list(self.accepted)

    def indexes(self) -> list[int]:
        with self.cond:
            return [int(json.loads(str(e["metadata"]["i"]))) for e in self.accepted]  # type: ignore[index]


@pytest.fixture
def backend() -> Iterator[tuple[RecordingServer, _Switchable]]:
    switch = _Switchable(down=True)
    with RecordingServer(switch) as server:
        yield server, switch


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}


def _config(server: RecordingServer, spool: Path, jsonl: Path | None = None, **extra: object) -> str:
    exporters: dict[str, object] = {"statsig": {"api_key": KEY, "endpoint": server.url + PATH}}
    if jsonl is not None:
        exporters["jsonl"] = {"path": str(jsonl)}
    options = {
        "exporters": exporters,
        "spool_dir": str(spool),
        "flush_interval": 0.1,
        "retry_initial_backoff": 0.05,
        "retry_max_backoff": 0.2,
        **extra,
    }
    return json.dumps(options)


# --- in this process --------------------------------------------------------------------------------------


def test_a_full_buffer_overflows_to_disk_and_everything_arrives_in_order(
    backend: tuple[RecordingServer, _Switchable], tmp_path: Path
) -> None:
    server, switch = backend
    evlog.configure(**json.loads(_config(server, tmp_path / "spool", max_queue_size=50)))
    for i in range(500):
        evlog.log_event("e", data={"i": i})
    assert evlog.flush(0.5) is False  # the backend is down: not delivered yet
    stats = evlog.stats()["statsig"]
    assert stats.dropped == {}
    assert stats.queued == 500  # 50 in memory, the rest on disk only
    switch.down = False
    assert evlog.flush(20) is True
    assert switch.indexes() == list(range(500))
    stats = evlog.stats()["statsig"]
    assert (stats.sent, stats.dropped, stats.queued, stats.logged) == (500, {}, 0, 500)
    assert evlog.stats().spool["events"] == 0


def test_without_the_spool_the_same_overflow_is_counted(backend: tuple[RecordingServer, _Switchable]) -> None:
    server, _switch = backend
    options = json.loads(_config(server, Path("unused"), max_queue_size=50))
    del options["spool_dir"]
    evlog.configure(**options)
    for i in range(500):
        evlog.log_event("e", data={"i": i})
    evlog.flush(0.5)
    assert evlog.stats()["statsig"].dropped.get("queue_full", 0) >= 400


def test_past_spool_max_bytes_the_oldest_events_on_disk_are_dropped_and_counted(
    backend: tuple[RecordingServer, _Switchable], tmp_path: Path
) -> None:
    server, switch = backend
    drops: list[Drop] = []
    evlog.configure(
        **json.loads(_config(server, tmp_path / "spool", max_queue_size=20, spool_max_bytes=20_000)),
        on_drop=drops.append,
    )
    for i in range(1_000):
        evlog.log_event("e", data={"i": i, "pad": "x" * 100})
    evlog.flush(1.5)  # gives the router time to check the limits (once a second)
    stats = evlog.stats()
    assert stats["statsig"].dropped.get("spool_full", 0) > 0
    assert stats.spool["bytes"] <= 20_000 or stats["statsig"].dropped["spool_full"] >= 900
    switch.down = False
    evlog.flush(20)
    stats = evlog.stats()
    exporter = stats["statsig"]
    assert exporter.sent + exporter.dropped_total == 1_000  # every event delivered or counted
    assert sum(d.count for d in drops if d.reason.value == "spool_full") == exporter.dropped["spool_full"]
    assert switch.indexes() == sorted(switch.indexes())  # what survived arrived in log order


def test_a_spool_dir_that_cannot_be_used_warns_once_and_evlog_carries_on_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    in_the_way = tmp_path / "not-a-dir"
    in_the_way.write_text("a file where the spool directory should be")
    evlog.configure(exporters=["memory"], spool_dir=str(in_the_way), flush_interval=0.05)
    evlog.log_event("still delivered")
    assert evlog.flush(5) is True
    assert len([r for r in caplog.records if r.name == "evlog" and "spool" in r.getMessage()]) == 1
    assert evlog.stats()["memory"].sent == 1


def test_a_corrupt_spool_file_is_set_aside_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / "dead-123-abc.evspool").write_bytes(b"this is not an sqlite database" * 100)
    evlog.configure(exporters=["memory"], spool_dir=str(spool), flush_interval=0.05)
    evlog.log_event("carries on")
    assert evlog.flush(5) is True
    assert (spool / "dead-123-abc.evspool.corrupt").exists()
    assert any("corrupt" in r.getMessage() or "set aside" in r.getMessage() for r in caplog.records)


def test_events_the_spool_cannot_give_back_are_counted_not_lost_silently(
    backend: tuple[RecordingServer, _Switchable], tmp_path: Path
) -> None:
    import sqlite3

    from evlog._api import current_client

    server, switch = backend
    evlog.configure(**json.loads(_config(server, tmp_path / "spool", max_queue_size=20)))
    for i in range(200):
        evlog.log_event("e", data={"i": i})
    evlog.flush(0.3)  # the backend is down: the buffer holds 20, the rest is on disk only
    client = current_client()
    assert client is not None and client.keeper is not None and client.keeper.spool is not None
    with sqlite3.connect(client.keeper.spool.path) as db:  # a disk that garbles what it holds
        db.execute("UPDATE batches SET body = x'00'")
    switch.down = False
    evlog.flush(10)
    stats = evlog.stats()["statsig"]
    assert stats.dropped.get("spool_unreadable", 0) > 0
    assert stats.sent + stats.dropped_total + stats.queued + stats.unknown == stats.logged == 200


def test_events_older_than_spool_max_age_are_dropped_and_counted(
    backend: tuple[RecordingServer, _Switchable], tmp_path: Path
) -> None:
    server, switch = backend
    evlog.configure(**json.loads(_config(server, tmp_path / "spool", max_queue_size=10, spool_max_age=0.3)))
    for i in range(100):
        evlog.log_event("e", data={"i": i})
    evlog.flush(1.5)  # the age check runs once a second
    dropped = evlog.stats()["statsig"].dropped
    assert dropped.get("spool_expired", 0) >= 80  # the ones on disk only; the buffer's ten are still in memory
    switch.down = False
    evlog.flush(10)
    stats = evlog.stats()["statsig"]
    assert stats.sent + stats.dropped_total == 100


def test_shutdown_with_the_backend_down_leaves_the_events_to_the_next_process(
    backend: tuple[RecordingServer, _Switchable], tmp_path: Path
) -> None:
    server, switch = backend
    config = json.loads(_config(server, tmp_path / "spool"))
    evlog.configure(**config)
    for i in range(20):
        evlog.log_event("e", data={"i": i})
    assert evlog.shutdown(timeout=0.5) is False
    stats = evlog.stats()["statsig"]
    # Not delivered by this process: given up at the deadline, or cut off mid-request (the outcome unknown).
    assert stats.dropped.get("shutdown", 0) + stats.unknown == 20
    switch.down = False
    evlog.configure(**config)  # a new client adopts the file as a restarted process would
    switch.wait_for(20)
    assert sorted(switch.indexes()) == list(range(20))


# --- across processes -------------------------------------------------------------------------------------

_LOGGER = """
import json, sys, threading, evlog
evlog.configure(**json.loads(sys.argv[1]))
tick = threading.Event()
for i in range(100_000):
    evlog.log_event("e", data={"i": i})
    if i % 50 == 0:
        print(i, flush=True)
    tick.wait(0.001)  # about 1,000 events/s, as an app would log them
"""

_ADOPTER = """
import json, sys, threading, evlog
evlog.configure(**json.loads(sys.argv[1]))
print("started", flush=True)
threading.Event().wait(60)
"""


def _start(script: str, config: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()


@pytest.mark.parametrize("adopters", [1, 2])
def test_after_kill_9_new_processes_deliver_the_rest_once_losing_at_most_the_window(
    backend: tuple[RecordingServer, _Switchable], tmp_path: Path, adopters: int
) -> None:
    server, switch = backend
    written = tmp_path / "events.jsonl"
    config = _config(server, tmp_path / "spool", jsonl=written)
    logger = _start(_LOGGER, config)
    try:
        assert logger.stdout is not None
        last = -1
        for line in logger.stdout:
            last = int(line)
            if last >= 1_000:
                break
        logger.send_signal(signal.SIGKILL)
        logger.wait(10)
    finally:
        _stop(logger)
    assert not switch.accepted  # the backend was down: everything is in the spool
    switch.down = False
    procs = [_start(_ADOPTER, config) for _ in range(adopters)]
    try:
        switch.wait_for(last - 300)
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        # Wait until nothing more arrives: every adopter has gone through the file it took.
        while True:
            before = len(switch.accepted)
            with switch.cond:
                switch.cond.wait(1.5)
            if len(switch.accepted) == before:
                break
    finally:
        for proc in procs:
            _stop(proc)
    got = switch.indexes()
    assert len(got) == len(set(got))  # each event once, even with two adopters at once
    assert set(range(last - 300)) <= set(got)  # only the last moments before the kill may be missing
    assert max(got) <= last + 100
    # The file exporter, which the killed process wrote to as it went: each event once as well.
    lines = [json.loads(line)["data"]["i"] for line in written.read_text().splitlines()]
    assert len(lines) == len(set(lines))
    assert set(range(last - 300)) <= set(lines)
