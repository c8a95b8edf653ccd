"""The ``viewer`` exporter: it delivers to a running viewer, and costs nothing when none is running."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

import evlog
from evlog.viewer import ViewerServer


@pytest.fixture
def viewer() -> Iterator[ViewerServer]:
    with ViewerServer(port=0) as server:
        yield server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_events_reach_the_viewer_in_their_full_form(viewer: ViewerServer) -> None:
    evlog.configure(exporters={"viewer": {"url": viewer.url}})
    evlog.log_event("signup", category="auth", data={"plan": "pro"}, user=evlog.User(id="u1"))
    assert evlog.flush(5)
    (event,) = viewer.store.after(0)["events"]
    assert (event["name"], event["category"], event["data"], event["user"]) == (
        "signup",
        "auth",
        {"plan": "pro"},
        {"id": "u1"},
    )
    assert evlog.stats()["viewer"].sent == 1


def test_the_process_and_its_counters_come_with_each_batch(viewer: ViewerServer) -> None:
    evlog.configure(exporters={"viewer": {"url": viewer.url}, "memory": {}})
    evlog.log_event("a")
    assert evlog.flush(5)
    (process,) = viewer.store.after(0)["processes"]
    assert set(process["stats"]) == {"viewer", "memory"}
    assert process["received"] == 1


def test_without_a_viewer_events_are_dropped_at_once_counted_and_not_retried() -> None:
    evlog.configure(exporters={"viewer": {"url": f"http://127.0.0.1:{_closed_port()}"}})
    for i in range(50):
        evlog.log_event("e", data={"i": i})
    evlog.flush(5)
    stats = evlog.stats()["viewer"]
    assert dict(stats.dropped) == {"failed": 50}
    assert (stats.sent, stats.retried, stats.queued) == (0, 0, 0)


def test_without_a_viewer_nothing_is_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    drops: list[evlog.Drop] = []
    evlog.configure(exporters={"viewer": {"url": f"http://127.0.0.1:{_closed_port()}"}}, on_drop=drops.append)
    with caplog.at_level(logging.DEBUG, logger="evlog"):
        evlog.log_event("e")
        evlog.flush(5)
    assert [r.levelno for r in caplog.records if "no viewer running" in r.getMessage()] == [logging.DEBUG]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "no viewer running at" in drops[0].detail


def test_a_viewer_that_never_answers_does_not_slow_log_event() -> None:
    """A socket that accepts connections but never answers: each export waits out its timeout, the app not."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        evlog.configure(exporters={"viewer": {"url": url, "timeout": 0.3}}, flush_interval=0.01)
        started = time.perf_counter()
        for i in range(2000):
            evlog.log_event("e", data={"i": i})
        elapsed = time.perf_counter() - started
        evlog.flush(5)
        stats = evlog.stats()["viewer"]
    assert elapsed < 0.3  # all 2,000 calls together take less than one export's wait
    assert stats.dropped.get("failed", 0) == 2000
    assert stats.retried == 0


@pytest.mark.parametrize("url", ["http://192.168.1.2:8765", "https://127.0.0.1:8765", "ftp://localhost"])
def test_the_exporter_sends_to_this_machine_only(url: str) -> None:
    from evlog.exporters.viewer import ViewerExporter

    with pytest.raises(evlog.ConfigError, match="this machine only"):
        ViewerExporter(url=url)
