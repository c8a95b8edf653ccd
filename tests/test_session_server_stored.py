"""What the real DataCat server stores must be what the app logged (issue 14).

The fake in ``support.datacat_fake`` behaves like the real server where it differs from the documented API
(severity in ``category`` only, float64 numbers, names that flip session flags, suspended and crashed
sessions, arrival order, slowing down as a session grows), so these tests catch a regression without the real
binary; ``test_session_server.py`` runs the real one when ``EVLOG_TEST_DATACAT_SERVER`` names it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import evlog
from support.datacat_fake import DataCatFake

FAST = {"flush_interval": 0.05, "retry_initial_backoff": 0.01, "retry_max_backoff": 0.05}


@pytest.fixture
def fake() -> Iterator[DataCatFake]:
    with DataCatFake() as server:
        yield server


def _configure(fake: DataCatFake, **options: Any) -> None:
    opts: dict[str, Any] = {"url": fake.url, "product": "app", "version": "1.0", "heartbeat_interval": 0}
    evlog.configure(exporters={"session_server": {**opts, **options}}, **FAST)


def _stored(fake: DataCatFake) -> list[dict[str, Any]]:
    return fake.events(fake.only_session().id)


def test_severity_is_kept_by_default_and_the_category_goes_to_group(fake: DataCatFake) -> None:
    _configure(fake)
    evlog.log_event("low", level="debug")
    evlog.log_event("high", level="critical")
    evlog.log_event("clicked", level="warning", category="ui")
    assert evlog.flush(5)
    stored = {e["name"]: (e["category"], e.get("group")) for e in _stored(fake)}
    assert stored == {"low": ("debug", None), "high": ("critical", None), "clicked": ("warning", "ui")}


def test_the_documented_form_is_still_available(fake: DataCatFake) -> None:
    _configure(fake, severity_in_category=False)
    evlog.log_event("low", level="debug", category="ui")
    assert evlog.flush(5)
    (event,) = _stored(fake)
    assert event["category"] == "ui"  # and the level is lost: the server keeps no level field


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "critical"])
def test_the_level_given_to_capture_exception_is_the_one_stored(fake: DataCatFake, level: str) -> None:
    _configure(fake)
    try:
        raise KeyError("missing")
    except KeyError:
        evlog.capture_exception(level=level)
    assert evlog.flush(5)
    (event,) = _stored(fake)
    assert event["category"] == level
    # The type is kept either way: as the exception field, or (for info, which the server would turn into
    # error) in data.
    assert (event.get("exception_type") or event["data"].get("exception_type")) == "KeyError"
    assert event["stacktrace"] and event["exception_msg"] == "'missing'"


def test_an_app_event_cannot_flip_the_sessions_hung_flag_by_accident(fake: DataCatFake) -> None:
    _configure(fake)
    evlog.log_event("application_appears_hung")
    assert evlog.flush(5)
    sid = fake.only_session().id
    assert [e["name"] for e in fake.events(sid)] == ["app.application_appears_hung"]
    assert fake.state(sid)["hung"] is False


def test_reserved_names_can_be_allowed_on_purpose(fake: DataCatFake) -> None:
    _configure(fake, allow_reserved_names=True)
    evlog.log_event("application_appears_hung")
    assert evlog.flush(5)
    assert fake.state(fake.only_session().id)["hung"] is True


def test_events_are_stored_in_log_order(fake: DataCatFake) -> None:
    fake.latency = 0.0005
    _configure(fake)
    for i in range(300):
        evlog.log_event(f"e{i}")
    assert evlog.flush(20)
    assert [e["name"] for e in _stored(fake)] == [f"e{i}" for i in range(300)]
    assert fake.max_in_flight == 1


@pytest.mark.parametrize("run", [1, 2])
def test_1000_events_then_shutdown_with_defaults_always_end_the_session(run: int) -> None:
    # About what the real server costs: 1.4 ms per event, growing with the session's size.
    with DataCatFake(latency=0.0014, growth=0.000002) as fake:
        evlog.configure(exporters={"session_server": {"url": fake.url, "product": "app", "version": "1.0"}})
        for i in range(1_000):
            evlog.log_event("e", data={"i": i})
        evlog.shutdown()
        session = fake.only_session()
        assert session.ended, "the session was left open"
        stats = evlog.stats()["session_server"]
        stored = len(session.events)
        assert stats.sent + stats.dropped_total + stats.unknown == 1_000
        assert stats.sent <= stored <= stats.sent + stats.unknown  # never counted lost while stored


def test_a_heartbeat_goes_out_when_the_session_starts(fake: DataCatFake) -> None:
    _configure(fake, heartbeat_interval=60)  # the first one must not wait a whole interval
    evlog.log_event("first")
    assert evlog.flush(5)
    sid = fake.only_session().id
    fake.server.wait_for(1, path=f"/api/sessions/{sid}/heartbeat")
    assert fake.state(sid)["active"] is True


_KILLED_EARLY = """
import sys, threading, evlog
evlog.configure(
    exporters={"session_server": {"url": sys.argv[1], "product": "app", "version": "1.0", "machine_id": "m-1"}},
    flush_interval=0.05,
)
evlog.log_event("started")
evlog.flush(5)
print("ready", flush=True)
threading.Event().wait(60)
"""


def test_a_process_killed_early_is_marked_crashed_by_the_next_session_of_its_machine() -> None:
    with DataCatFake(heartbeat_timeout=0.0) as fake:  # any silence counts as stopped heartbeats
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_KILLED_EARLY), fake.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")},
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            dead = fake.only_session().id
            fake.server.wait_for(1, path=f"/api/sessions/{dead}/heartbeat")
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            child.kill()
            child.communicate()
        _configure(fake, machine_id="m-1")
        evlog.log_event("next run")
        assert evlog.flush(5)
        assert fake.state(dead)["crashed"] is True


def test_a_heartbeat_answered_404_starts_a_replacement_that_gets_heartbeats(fake: DataCatFake) -> None:
    _configure(fake, heartbeat_interval=0.1)
    evlog.log_event("before the server lost its data")
    assert evlog.flush(5)
    lost = fake.only_session().id
    fake.server.wait_for(1, path=f"/api/sessions/{lost}/heartbeat")
    seen = len(fake.server.requests)
    fake.forget(lost)
    # The next heartbeat gets 404, creates the replacement, then beats for it: wait until that beat arrived
    # (the replacement exists by then: its creation was answered first).
    while True:
        requests = fake.server.wait_for(seen + 1)
        beats = [r.path for r in requests[seen:] if r.path.endswith("/heartbeat") and lost not in r.path]
        if beats:
            break
        seen = len(requests)
    replacement = fake.only_session().id
    assert beats[0] == f"/api/sessions/{replacement}/heartbeat"
    evlog.log_event("after")
    assert evlog.flush(5)
    assert [e["name"] for e in fake.events(replacement)] == ["after"]


def test_with_the_spool_every_event_is_stored_once_in_log_order_in_its_own_session(tmp_path: Any) -> None:
    with DataCatFake(latency=0.0014, growth=0.000002) as fake:
        exporters = {"session_server": {"url": fake.url, "product": "app", "version": "1.0"}}
        evlog.configure(exporters=exporters, spool_dir=str(tmp_path / "spool"))
        for i in range(1_000):
            evlog.log_event("e", data={"i": i})
        evlog.shutdown()  # the default budget does not fit 1,000 events: the rest stays in the spool
        first = fake.only_session()
        assert first.ended
        left = 1_000 - len(first.events)
        assert left > 0
        evlog.configure(exporters=exporters, spool_dir=str(tmp_path / "spool"))  # the next run of the app
        evlog.log_event("next run")
        fake.server.wait_for(1_000, path=f"/api/sessions/{first.id}/events", timeout=30)
        assert evlog.flush(5)
        stored = [int(e["data"]["i"]) for e in fake.events(first.id)]
        assert stored == list(range(1_000))  # each once, in log order, in the session they were logged in
        (second,) = [s for s in fake.sessions.values() if s.id != first.id]
        assert [e["name"] for e in second.events] == ["next run"]


def test_integers_past_2_53_are_stored_exactly(fake: DataCatFake) -> None:
    _configure(fake)
    evlog.log_event("big", data={"exact": 2**53 + 1, "huge": 2**64 + 5, "small": 42})
    assert evlog.flush(5)
    (event,) = _stored(fake)
    # The server decodes numbers as float64: only text keeps these digits; small ones stay numbers.
    assert event["data"] == {"exact": str(2**53 + 1), "huge": str(2**64 + 5), "small": 42.0}


def test_a_lone_surrogate_is_sent_replaced_not_dropped(fake: DataCatFake) -> None:
    _configure(fake)
    evlog.log_event("text", message="broken \ud800 text", data={"k": "x\udfffy"})
    evlog.log_event("after")
    assert evlog.flush(5)
    stored = _stored(fake)
    assert [e["name"] for e in stored] == ["text", "after"]
    assert stored[0]["message"] == "broken \ufffd text"
    assert stored[0]["data"] == {"k": "x\ufffdy"}
    assert evlog.stats()["session_server"].dropped == {}
