"""Delivery guarantees: what happens to events at exit, during transient failures and outages, in bursts, in
forked workers and on SIGTERM. Each case ends in "delivered" or "counted with a reason", over real HTTP on
loopback (a Statsig fake answering by its contract, with faults scripted per request) or a real file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import evlog
from evlog import Drop, ExportResult
from support.exporters import ScriptedExporter
from support.loopback import Fault, RecordingServer, Reply, Request
from support.statsig_fake import KEY, PATH, StatsigFake, events_of


@pytest.fixture
def statsig() -> Iterator[RecordingServer]:
    with RecordingServer(StatsigFake()) as server:
        yield server


def _statsig_exporters(server: RecordingServer) -> dict[str, dict[str, str]]:
    return {"statsig": {"api_key": KEY, "endpoint": server.url + PATH}}


def _names(server: RecordingServer) -> list[str]:
    return [e["eventName"] for e in events_of([r for r in server.requests_to(PATH) if _accepted(r)])]


def _accepted(request: Request) -> bool:
    return getattr(request, "status", 202) == 202


def _run(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- transient failures at exit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Reply(429, {"message": "slow down"}, headers={"Retry-After": "1"}), Reply(503, "busy"), Fault.RESET],
    ids=["429-retry-after-1", "503", "reset"],
)
def test_a_transient_failure_at_shutdown_loses_nothing(statsig: RecordingServer, fault: Reply | Fault) -> None:
    statsig.script(fault)
    evlog.configure(exporters=_statsig_exporters(statsig), flush_interval=60)
    for i in range(50):
        evlog.log_event(f"e{i}")
    started = time.monotonic()
    assert evlog.shutdown(timeout=10) is True
    assert time.monotonic() - started < 5
    names = [e["eventName"] for e in events_of(statsig.requests_to(PATH)[1:])]
    assert sorted(names) == sorted(f"e{i}" for i in range(50))
    stats = evlog.stats()["statsig"]
    assert (stats.sent, stats.dropped, stats.unknown) == (50, {}, 0)


def test_a_rate_limit_at_plain_exit_loses_nothing(statsig: RecordingServer) -> None:
    """The exit-time shutdown (shutdown_timeout, 2 s by default) waits out a 1 s Retry-After."""
    statsig.script(Reply(429, {"message": "slow down"}, headers={"Retry-After": "1"}))
    proc = _run(
        f"""
        import evlog
        evlog.configure(exporters={{"statsig": {{"api_key": "{KEY}", "endpoint": "{statsig.url + PATH}"}}}})
        for i in range(50):
            evlog.log_event("exit", data={{"i": i}})
        """
    )
    assert proc.returncode == 0, proc.stderr
    requests = statsig.requests_to(PATH)
    assert len(requests) == 2
    assert sorted(json.loads(e["metadata"]["i"]) for e in events_of(requests[1:])) == list(range(50))


# --- an outage, then recovery -----------------------------------------------------------------------------


class _Outage:
    """A Statsig fake that answers 503 until ``recover()``, and notes when it first accepted after that."""

    def __init__(self) -> None:
        self.fake = StatsigFake()
        self.down = True
        self.recovered_at: float | None = None
        self.first_accepted_at: float | None = None
        self.failures = 0
        self.lock = threading.Lock()

    def recover(self) -> None:
        with self.lock:
            self.down = False
            self.recovered_at = time.monotonic()

    def __call__(self, request: Request) -> Reply:
        with self.lock:
            if self.down:
                self.failures += 1
                return Reply(503, "down for maintenance")
            if self.first_accepted_at is None:
                self.first_accepted_at = time.monotonic()
        return self.fake(request)


@pytest.mark.slow
def test_after_a_20_second_outage_delivery_resumes_within_2_seconds_and_nothing_is_lost() -> None:
    outage = _Outage()
    with RecordingServer(outage) as server:
        evlog.configure(exporters=_statsig_exporters(server), flush_interval=0.2)
        sent = 0
        until = time.monotonic() + 20
        while time.monotonic() < until:  # keep logging through the outage, as an app would
            evlog.log_event(f"e{sent}")
            sent += 1
            threading.Event().wait(0.05)  # pacing the app's own logging, not synchronisation
        outage.recover()
        assert evlog.flush(10) is True
        assert outage.recovered_at is not None and outage.first_accepted_at is not None
        assert outage.first_accepted_at - outage.recovered_at < 2.0
        assert outage.failures >= 5
        stats = evlog.stats()["statsig"]
        assert (stats.sent, stats.dropped) == (sent, {})
        assert sorted(e["eventName"] for e in events_of(outage_requests(server))) == sorted(
            f"e{i}" for i in range(sent)
        )


def outage_requests(server: RecordingServer) -> list[Request]:
    """The requests that were accepted (the ones after the outage): each holds a batch the fake took."""
    accepted = []
    for request in server.requests_to(PATH):
        if request.json() and "events" in request.json():
            accepted.append(request)
    # Every failed attempt was retried with the same events: keep the last attempt of each batch's events.
    seen: set[str] = set()
    out = []
    for request in reversed(accepted):
        names = tuple(e["eventName"] for e in request.json()["events"])
        key = ",".join(names)
        if key not in seen:
            seen.add(key)
            out.append(request)
    return out


# --- bursts -----------------------------------------------------------------------------------------------


def test_eight_threads_logging_20000_events_each_lose_nothing_at_default_settings(tmp_path: Path) -> None:
    path = tmp_path / "burst.jsonl"
    evlog.configure(exporters={"jsonl": {"path": str(path)}})
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(20_000):
            evlog.log_event("tick", data={"t": n, "i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert evlog.flush(30) is True
    stats = evlog.stats()["jsonl"]
    assert (stats.sent, stats.dropped, stats.logged) == (160_000, {}, 160_000)
    assert len(path.read_text().splitlines()) == 160_000


def test_a_stuck_processor_slows_log_event_once_then_calls_drop_at_once() -> None:
    release = threading.Event()

    def stuck(event: evlog.Event) -> evlog.Event:
        release.wait(10)
        return event

    drops: list[Drop] = []
    evlog.configure(exporters=["memory"], before_send=[stuck], max_queue_size=10, intake_wait=0.2, on_drop=drops.append)
    try:
        for _ in range(11):  # fill the intake (the router holds the first one in the processor)
            evlog.log_event("fill")
        started = time.monotonic()
        evlog.log_event("waits, then is dropped")
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(100):
            evlog.log_event("dropped at once")
        rest = time.monotonic() - started
        assert 0.15 <= first < 1.0
        assert rest < 0.15  # one bounded wait, not one per call
    finally:
        release.set()
    evlog.flush(5)
    assert evlog.stats()["memory"].dropped.get("queue_full", 0) >= 100


# --- accounting -------------------------------------------------------------------------------------------


def test_queued_sent_dropped_and_unknown_add_up_to_what_was_logged() -> None:
    def reject_first(batch: evlog.Batch) -> ExportResult:
        return ExportResult.partial({batch.events[0].event_id: "refused"})

    exporter = ScriptedExporter(reject_first, ExportResult.failure("HTTP 403"), max_batch=5)
    evlog.configure(exporters=[exporter], flush_interval=0.05, before_send=[lambda e: None if e.name == "x" else e])
    for i in range(30):
        evlog.log_event("x" if i % 10 == 0 else "e")
    assert evlog.flush(5) is False
    stats = evlog.stats()["scripted"]
    assert stats.logged == 30
    assert stats.queued + stats.sent + stats.dropped_total + stats.unknown == stats.logged
    assert stats.dropped == {"before_send": 3, "rejected": 1, "failed": 5}


def test_flush_is_true_again_once_the_losses_are_behind(tmp_path: Path) -> None:
    exporter = ScriptedExporter(ExportResult.failure("HTTP 403"))
    evlog.configure(exporters=[exporter], flush_interval=0.05)
    evlog.log_event("lost")
    assert evlog.flush(5) is False
    evlog.log_event("delivered")
    assert evlog.flush(5) is True


# --- forked workers ---------------------------------------------------------------------------------------

_MULTIPROCESSING = """
import multiprocessing, sys
import evlog

def task(i):
    evlog.log_event("pool", data={"i": i})
    return i

def proc(i):
    evlog.log_event("process", data={"i": i})

if __name__ == "__main__":
    evlog.configure(exporters={"jsonl": {"path": sys.argv[1]}})
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=proc, args=(i,)) for i in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    if sys.argv[2] == "with":  # leaving the block terminates the workers (SIGTERM)
        with ctx.Pool(2) as pool:
            assert pool.map(task, range(6)) == list(range(6))
    else:
        pool = ctx.Pool(2)
        assert pool.map(task, range(6)) == list(range(6))
        pool.close()
        pool.join()
"""


@pytest.mark.parametrize("pool_end", ["close-join", "with"])
def test_multiprocessing_fork_children_deliver_every_event(tmp_path: Path, pool_end: str) -> None:
    path = tmp_path / "children.jsonl"
    script = tmp_path / "mp_app.py"
    script.write_text(_MULTIPROCESSING)
    proc = subprocess.run(
        [sys.executable, str(script), str(path), pool_end], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    got = sorted((e["name"], e["data"]["i"]) for e in _lines(path))  # type: ignore[index]
    assert got == sorted([("process", i) for i in range(3)] + [("pool", i) for i in range(6)])


def test_an_os_fork_child_delivers_at_its_normal_exit(tmp_path: Path) -> None:
    path = tmp_path / "fork.jsonl"
    proc = _run(
        f"""
        import os, evlog
        evlog.configure(exporters={{"jsonl": {{"path": {str(path)!r}}}}}, flush_interval=60)
        pid = os.fork()
        if pid == 0:
            evlog.log_event("child")
            raise SystemExit(0)  # a normal exit: atexit runs
        os.waitpid(pid, 0)
        evlog.log_event("parent")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(e["name"] for e in _lines(path)) == ["child", "parent"]  # type: ignore[type-var]


# --- signals and hooks from the environment ---------------------------------------------------------------

_WAITS_FOR_SIGTERM = """
import sys, threading, evlog
evlog.configure(exporters={{"jsonl": {{"path": sys.argv[1]}}}}, flush_interval=60, handle_signals={handle})
evlog.log_event("before the signal")
print("ready", flush=True)
threading.Event().wait(30)
"""


@pytest.mark.parametrize("handle", [True, False])
def test_sigterm_delivers_what_is_queued_only_with_handle_signals(tmp_path: Path, handle: bool) -> None:
    path = tmp_path / "term.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", _WAITS_FOR_SIGTERM.format(handle=handle), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == -signal.SIGTERM  # the exit status the signal gives, handled or not
    finally:
        child.kill()
        child.communicate()
    assert [e["name"] for e in _lines(path)] == (["before the signal"] if handle else [])


def test_sigterm_hands_over_to_the_apps_own_handler(tmp_path: Path) -> None:
    path = tmp_path / "term.jsonl"
    proc = _run(
        f"""
        import os, signal, evlog
        seen = []
        signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
        evlog.configure(exporters={{"jsonl": {{"path": {str(path)!r}}}}}, flush_interval=60, handle_signals=True)
        evlog.log_event("queued")
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM], seen
        print("still running")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "still running"
    assert [e["name"] for e in _lines(path)] == ["queued"]


def test_a_thread_crash_before_the_first_event_is_recorded_when_the_environment_asks(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    proc = _run(
        """
        import threading
        import evlog  # configures nothing: the hooks come from EVLOG_CAPTURE_EXCEPTIONS alone

        def work():
            raise RuntimeError("boom before anything was logged")

        t = threading.Thread(target=work)
        t.start()
        t.join()
        """,
        env={"EVLOG_CAPTURE_EXCEPTIONS": "1", "EVLOG_EXPORTERS": "jsonl", "EVLOG_JSONL_PATH": str(path)},
    )
    assert proc.returncode == 0, proc.stderr
    events = _lines(path)
    assert [e["name"] for e in events] == ["exception"]
    assert events[0]["exception"]["exception_msg"] == "boom before anything was logged"  # type: ignore[index]


# --- a prefork server -----------------------------------------------------------------------------------------

_WSGI_APP = """
import os
import evlog

evlog.configure(exporters={"jsonl": {"path": os.environ["EVENTS"]}}, flush_interval=60)


def app(environ, start_response):
    evlog.log_event("request", data={"path": environ["PATH_INFO"], "pid": os.getpid()})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "per-worker"])
def test_gunicorn_workers_deliver_every_event_when_the_master_gets_sigterm(tmp_path: Path, preload: bool) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "wsgi_app.py").write_text(_WSGI_APP)
    events = tmp_path / "events.jsonl"
    port = _free_port()
    args = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi_app:app"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env.update(EVENTS=str(events), HOME=str(tmp_path))  # HOME: where gunicorn puts its control socket
    master = subprocess.Popen(
        [*args, "--preload"] if preload else args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert master.stderr is not None
        for line in master.stderr:  # the master binds before it forks: once it listens, requests queue up
            if "Listening at" in line:
                break
        else:
            pytest.fail("gunicorn did not start")
        results = []
        lock = threading.Lock()

        def client(n: int) -> None:
            for i in range(10):
                ok = _get(f"http://127.0.0.1:{port}/c{n}/r{i}")
                with lock:
                    results.append(ok)

        clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert all(results) and len(results) == 40
        master.send_signal(signal.SIGTERM)
        assert master.wait(30) == 0
    finally:
        master.kill()
        _, stderr = master.communicate()
    assert sorted(e["data"]["path"] for e in _lines(events)) == sorted(  # type: ignore[index]
        f"/c{n}/r{i}" for n in range(4) for i in range(10)
    ), stderr[-2000:]
