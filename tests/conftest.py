"""Shared fixtures: every test starts from a clean evlog (no env, no config file, no client) and must leave
no evlog thread and no server running."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

import evlog
import evlog.testing
from support.loopback import RecordingServer

KEEP_ENV = {"EVLOG_TEST_DATACAT_SERVER"}


def _evlog_threads(exclude: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("evlog-") and t not in exclude and t.is_alive()]


@pytest.fixture(autouse=True)
def _isolate_evlog(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("EVLOG_") and key not in KEEP_ENV:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    before = set(threading.enumerate())
    yield
    evlog.testing.reset(timeout=5)
    deadline = time.monotonic() + 5
    left = _evlog_threads(before)
    while left and time.monotonic() < deadline:
        left[0].join(max(0.0, deadline - time.monotonic()))
        left = _evlog_threads(before)
    assert not left, f"threads left running: {[t.name for t in left]}"


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture(autouse=True, scope="session")
def _no_thread_outlives_the_suite() -> Iterator[None]:
    """Servers, receivers and background workers started by any test must all be gone at the end."""
    yield
    deadline = time.monotonic() + 10
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    while left and time.monotonic() < deadline:
        left[0].join(max(0.0, deadline - time.monotonic()))
        left = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    assert not left, f"threads still running after the suite: {[t.name for t in left]}"
