"""The session_server exporter over real HTTP, against a fake of the DataCat server's contract."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import evlog
from evlog import Batch, Event, ExceptionInfo, ExportStatus, Level
from evlog._api import current_client
from evlog.exporters.session_server import SessionServerExporter
from support.datacat_fake import DataCatFake
from support.events import make_event
from support.loopback import Fault, Reply

UTC = _dt.timezone.utc
WHEN = _dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
SECRET = "sk-test-7f3a9c1e5b"
FAST: dict[str, Any] = {"flush_interval": 0.05, "retry_initial_backoff": 0.01, "retry_max_backoff": 0.05}


@pytest.fixture
def fake() -> Iterator[DataCatFake]:
    with DataCatFake() as server:
        yield server


@pytest.fixture
def make_exporter(fake: DataCatFake) -> Iterator[Callable[..., SessionServerExporter]]:
    """Exporters used directly (without the pipeline); shut down at the end of the test."""
    made: list[SessionServerExporter] = []

    def build(**options: Any) -> SessionServerExporter:
        defaults: dict[str, Any] = {"url": fake.url, "product": "app", "version": "1.0", "heartbeat_interval": 0}
        exporter = SessionServerExporter(**{**defaults, **options})
        made.append(exporter)
        return exporter

    yield build
    for exporter in made:
        exporter.shutdown(2)


def configure(fake: DataCatFake, **options: Any) -> None:
    """The real pipeline, with short intervals."""
    opts: dict[str, Any] = {"url": fake.url, "product": "app", "version": "1.0", "heartbeat_interval": 0}
    evlog.configure(exporters={"session_server": {**opts, **options}}, **FAST)


def event_requests(fake: DataCatFake) -> list[Any]:
    return [r for r in fake.server.requests if r.path.endswith("/events")]


# --- session lifecycle ------------------------------------------------------------------------------------------


def test_session_created_once_and_reused_across_batches(fake: DataCatFake) -> None:
    configure(fake, hostname="host-1", machine_id="m-1")
    for i in range(3):
        evlog.log_event("first", data={"i": i})
    assert evlog.flush()
    evlog.log_event("second")
    assert evlog.flush()

    creates = fake.server.requests_to("/api/sessions")
    assert len(creates) == 1
    assert creates[0].json() == {"product": "app", "version": "1.0", "hostname": "host-1", "machine_id": "m-1"}
    session = fake.only_session()
    assert sorted(e["name"] for e in session.events) == ["first", "first", "first", "second"]
    assert evlog.stats()["session_server"].sent == 4
    assert evlog.stats()["session_server"].details["session_id"] == session.id


def test_documented_reply_forms_are_accepted(make_exporter: Callable[..., SessionServerExporter]) -> None:
    """The docs show 201 + ``id`` on create and ``{"success": true}``; the real server 200 + ``session_id``."""
    with DataCatFake(documented_replies=True) as documented:
        exporter = make_exporter(url=documented.url)
        result = exporter.export(Batch((make_event(),)))
        assert result.ok
        assert exporter.session_id == documented.only_session().id
        assert len(documented.only_session().events) == 1


def test_given_session_is_used_and_not_created_or_ended(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    sid = fake.add_session()
    exporter = make_exporter(session_id=sid, product=None, version=None)
    assert exporter.export(Batch((make_event(),))).ok
    exporter.shutdown(2)
    assert fake.server.requests_to("/api/sessions") == []
    assert [r.path for r in fake.server.requests] == [f"/api/sessions/{sid}/events"]
    assert not fake.sessions[sid].ended


def test_session_ended_at_shutdown(fake: DataCatFake) -> None:
    configure(fake)
    evlog.log_event("work")
    assert evlog.flush()
    assert evlog.shutdown(timeout=3)
    session = fake.only_session()
    assert session.ended
    assert not session.crashed
    assert fake.server.requests[-1].path == f"/api/sessions/{session.id}/end"


def test_crash_reported_instead_of_end_after_note_crash(fake: DataCatFake) -> None:
    configure(fake)
    evlog.log_event("work")
    assert evlog.flush()
    client = current_client()
    assert client is not None
    client.note_crash("uncaught ValueError: boom")
    assert evlog.shutdown(timeout=3)
    session = fake.only_session()
    assert session.crashed
    assert session.crash_reason == "uncaught ValueError: boom"
    assert fake.server.requests_to(f"/api/sessions/{session.id}/end") == []


def test_heartbeats_sent_while_running_and_stopped_at_shutdown(fake: DataCatFake) -> None:
    configure(fake, heartbeat_interval=0.05)
    evlog.log_event("work")
    assert evlog.flush()
    sid = fake.only_session().id
    fake.server.wait_for(3, path=f"/api/sessions/{sid}/heartbeat")
    assert evlog.shutdown(timeout=3)  # conftest checks that evlog-session-heartbeat is gone
    count = len(fake.server.requests_to(f"/api/sessions/{sid}/heartbeat"))
    assert fake.server.requests[-1].path == f"/api/sessions/{sid}/end"
    assert len(fake.server.requests_to(f"/api/sessions/{sid}/heartbeat")) == count


def test_no_heartbeat_thread_when_disabled(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    import threading

    exporter = make_exporter(heartbeat_interval=0)
    assert exporter.export(Batch((make_event(),))).ok
    assert not [t for t in threading.enumerate() if t.name == "evlog-session-heartbeat"]


def test_forked_child_neither_ends_nor_replaces_the_parents_session(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    """reset_after_fork runs in the child; the parent's session stays the parent's to end."""
    exporter = make_exporter()
    assert exporter.export(Batch((make_event("in parent"),))).ok
    exporter.reset_after_fork()
    assert exporter.export(Batch((make_event("in child"),))).ok
    exporter.shutdown(2)
    session = fake.only_session()
    assert [e["name"] for e in session.events] == ["in parent", "in child"]
    assert not session.ended
    assert len(fake.server.requests_to("/api/sessions")) == 1


# --- fields -------------------------------------------------------------------------------------------------------


def test_event_posted_with_exact_fields(fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]) -> None:
    exporter = make_exporter(severity_in_category=False)  # the documented API's form
    event = make_event(
        "button_click",
        timestamp=WHEN,
        level=Level.WARNING,
        category="ui",
        labels=("button", "click"),
        message="User clicked submit",
        data={"button_id": "submit", "n": 2},
    )
    assert exporter.export(Batch((event,))).ok
    (request,) = event_requests(fake)
    assert request.path == f"/api/sessions/{exporter.session_id}/events"
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {
        "name": "button_click",
        "timestamp": "2024-05-01T12:00:00.250000+00:00",
        "level": "warning",
        "category": "ui",
        "labels": ["button", "click"],
        "message": "User clicked submit",
        "data": {"button_id": "submit", "n": 2},
    }


def test_exception_event_carries_every_exception_field(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter()
    info = ExceptionInfo(
        exception_type="ValueError",
        exception_msg="Invalid input provided",
        stacktrace=("Traceback (most recent call last):", '  File "app.py", line 42, in process', "ValueError: x"),
        source_file="/app/validator.py",
        source_line=15,
        source_function="validate",
    )
    assert exporter.export(Batch((make_event("exception", level=Level.ERROR, exception=info),))).ok
    body = event_requests(fake)[0].json()
    assert {k: body[k] for k in body if k.startswith(("exception", "stack", "source"))} == {
        "exception_type": "ValueError",
        "exception_msg": "Invalid input provided",
        "stacktrace": list(info.stacktrace),
        "source_file": "/app/validator.py",
        "source_line": 15,
        "source_function": "validate",
    }
    assert fake.only_session().events[0]["category"] == "error"  # the server's own default for exceptions


def test_severity_in_category_sends_level_as_category_and_category_as_group(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter(severity_in_category=True)
    assert exporter.export(Batch((make_event(level=Level.CRITICAL, category="payments"),))).ok
    body = event_requests(fake)[0].json()
    assert (body["category"], body["group"], body["level"]) == ("critical", "payments", "critical")
    stored = fake.only_session().events[0]
    assert (stored["category"], stored["group"]) == ("critical", "payments")


def test_gzip_bodies(fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]) -> None:
    exporter = make_exporter(compress=True)
    assert exporter.export(Batch((make_event(data={"big": "x" * 2000}),))).ok
    request = event_requests(fake)[0]
    assert request.header("Content-Encoding") == "gzip"
    assert len(request.raw_body) < 500
    assert fake.only_session().events[0]["data"] == {"big": "x" * 2000}


# --- values the server would refuse --------------------------------------------------------------------------------


def test_bad_events_rejected_before_sending_and_neighbours_delivered(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter()
    good = make_event("good")
    bad_labels = make_event("bad_labels", labels=("ok", 3))  # type: ignore[arg-type]
    bad_data = make_event("bad_data", data=[1, 2])  # type: ignore[arg-type]
    bad_line = make_event("bad_line", exception=ExceptionInfo("E", source_line="line 4"))  # type: ignore[arg-type]
    result = exporter.export(Batch((good, bad_labels, bad_data, bad_line)))
    assert result.status is ExportStatus.PARTIAL
    assert result.retry_ids is None
    assert set(result.rejected) == {bad_labels.event_id, bad_data.event_id, bad_line.event_id}
    assert "labels must hold only strings" in result.rejected[bad_labels.event_id]
    assert "data must be an object" in result.rejected[bad_data.event_id]
    assert "source_line must be an integer" in result.rejected[bad_line.event_id]
    assert [e["name"] for e in fake.only_session().events] == ["good"]
    assert len(event_requests(fake)) == 1


def test_lossless_fixes_are_sent(fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]) -> None:
    """``"42"`` or ``42.0`` as source_line, and a naive timestamp, would get 400: they are fixed instead."""
    exporter = make_exporter()
    naive = Event(
        name="e",
        timestamp=_dt.datetime(2024, 1, 2, 3, 4, 5),  # naive: the point of the test
        event_id="id-1",
        exception=ExceptionInfo("E", source_line="42"),  # type: ignore[arg-type]
    )
    floaty = make_event(exception=ExceptionInfo("E", source_line=7.0))  # type: ignore[arg-type]
    assert exporter.export(Batch((naive, floaty))).ok
    stored = fake.only_session().events
    assert sorted(e["source_line"] for e in stored) == [7, 42]
    assert any(e["timestamp"] == "2024-01-02T03:04:05.000000+00:00" for e in stored)


def test_no_retry_on_400(fake: DataCatFake) -> None:
    sid = fake.add_session()
    configure(fake, session_id=sid)
    fake.server.script(Reply(400, "Invalid request body\n"))
    evlog.log_event("refused")
    assert evlog.flush() is False  # an event was refused: flush says not all was delivered
    stats = evlog.stats()["session_server"]
    assert stats.dropped == {"rejected": 1}
    assert (stats.sent, stats.retried) == (0, 0)
    assert len(event_requests(fake)) == 1


def test_400_reason_keeps_the_server_message(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter()
    assert exporter.export(Batch((make_event(),))).ok
    fake.server.script(Reply(400, "Invalid request body\n"))
    event = make_event()
    result = exporter.export(Batch((event,)))
    assert result.rejected == {event.event_id: "refused by the session server: HTTP 400: Invalid request body"}
    assert result.retry_ids is None


# --- retries --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_passed_on(
    status: int, fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter(max_concurrency=8)  # in parallel, each event has its own outcome
    assert exporter.export(Batch((make_event(),))).ok
    fake.server.script(Reply(status, "busy\n", headers={"Retry-After": "7"}))
    first, second = make_event("a"), make_event("b")
    result = exporter.export(Batch((first, second)))
    assert result.status is ExportStatus.PARTIAL
    assert result.retry_after == 7.0
    assert len(result.retry_ids or ()) == 1
    assert result.rejected == {}


@pytest.mark.parametrize("status", [503, 429])
def test_pipeline_retries_until_delivered(status: int, fake: DataCatFake) -> None:
    sid = fake.add_session()
    configure(fake, session_id=sid)
    fake.server.script(Reply(status, "busy\n", headers={"Retry-After": "0.2"}), Fault.RESET)
    started = time.monotonic()
    evlog.log_event("eventually")
    assert evlog.flush(timeout=5)
    assert time.monotonic() - started >= 0.2  # the server's Retry-After was honoured
    stats = evlog.stats()["session_server"]
    assert (stats.sent, stats.retried, stats.dropped) == (1, 2, {})
    assert [e["name"] for e in fake.events(sid)] == ["eventually"]
    assert len(event_requests(fake)) == 3


def test_session_creation_failure_is_retried(fake: DataCatFake) -> None:
    configure(fake)
    fake.server.script(Reply(503, "starting\n"))
    evlog.log_event("early")
    assert evlog.flush(timeout=5)
    assert [e["name"] for e in fake.only_session().events] == ["early"]
    assert len(fake.server.requests_to("/api/sessions")) == 2
    assert evlog.stats()["session_server"].sent == 1


def test_session_creation_refused_is_a_failure_with_the_server_message(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter()
    fake.server.script(Reply(400, "Product and version are required fields\n"))
    result = exporter.export(Batch((make_event(),)))
    assert result.status is ExportStatus.FAILURE
    assert "HTTP 400: Product and version are required fields" in result.message


# --- 404: the session is gone -----------------------------------------------------------------------------------


def test_404_when_evlog_owns_the_session_creates_a_new_one(fake: DataCatFake) -> None:
    configure(fake)
    evlog.log_event("before")
    assert evlog.flush()
    old = fake.only_session().id
    fake.forget(old)
    evlog.log_event("after")
    assert evlog.flush()
    new = fake.only_session()
    assert new.id != old
    assert [e["name"] for e in new.events] == ["after"]
    stats = evlog.stats()["session_server"]
    assert (stats.sent, stats.dropped) == (2, {})
    assert stats.details["sessions_created"] == 2


def test_404_again_after_replacing_the_session_is_undeliverable(
    fake: DataCatFake, make_exporter: Callable[..., SessionServerExporter]
) -> None:
    exporter = make_exporter()
    assert exporter.export(Batch((make_event(),))).ok
    fake.server.script(Reply(404, "session not found\n"))  # the first send
    fake.server.script(Reply(200, {"session_id": "phantom"}))  # the replacement, which the server forgets too
    event = make_event()
    result = exporter.export(Batch((event,)))
    assert result.status is ExportStatus.PARTIAL
    assert "404" in result.rejected[event.event_id]
    assert "again for its replacement phantom" in result.rejected[event.event_id]
    assert len(fake.server.requests_to("/api/sessions")) == 2  # created once more, not in a loop
    assert len(event_requests(fake)) == 3


def test_404_for_a_given_session_is_undeliverable_and_not_retried(fake: DataCatFake) -> None:
    configure(fake, session_id="0000-gone")
    evlog.log_event("lost")
    assert evlog.flush() is False  # an event was refused: flush says not all was delivered
    stats = evlog.stats()["session_server"]
    assert (stats.sent, stats.retried, stats.dropped) == (0, 0, {"rejected": 1})
    assert fake.server.requests_to("/api/sessions") == []
    assert len(event_requests(fake)) == 1


# --- credentials -----------------------------------------------------------------------------------------------------


def test_api_key_sent_as_bearer_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with DataCatFake(api_key=SECRET) as secured:
        configure(secured, api_key=SECRET, heartbeat_interval=0.05)
        evlog.log_event("secure")
        assert evlog.flush()
        secured.server.wait_for(1, path=f"/api/sessions/{secured.only_session().id}/heartbeat")
        assert {r.header("Authorization") for r in secured.server.requests} == {f"Bearer {SECRET}"}
        client = current_client()
        assert client is not None
        exporter = client.pipelines[0].exporter
        shown = repr(exporter) + repr(exporter.options) + repr(evlog.stats()) + repr(client.config)
        assert evlog.shutdown(timeout=3)
    assert SECRET not in shown + caplog.text
    assert secured.only_session().ended


def test_wrong_api_key_fails_without_printing_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with DataCatFake(api_key="the-right-key") as secured:
        configure(secured, api_key=SECRET)
        evlog.log_event("refused")
        assert evlog.flush() is False  # an event was refused: flush says not all was delivered
        stats = evlog.stats()["session_server"]
        assert stats.dropped == {"failed": 1}
        assert "Unauthorized" in caplog.text
        assert SECRET not in caplog.text + repr(stats)


# --- concurrency ------------------------------------------------------------------------------------------------------


def test_batch_sent_with_bounded_concurrency(make_exporter: Callable[..., SessionServerExporter]) -> None:
    with DataCatFake(latency=0.05) as slow:
        exporter = make_exporter(url=slow.url, max_concurrency=8)
        events = tuple(make_event(f"e{i}") for i in range(48))
        started = time.monotonic()
        assert exporter.export(Batch(events)).ok
        elapsed = time.monotonic() - started
        assert len(slow.only_session().events) == 48
        assert 2 <= slow.max_in_flight <= 8
        assert elapsed < 48 * 0.05 / 2  # sequential would take 2.4 s


# --- configuration ---------------------------------------------------------------------------------------------


def test_configured_purely_from_the_environment(fake: DataCatFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "session_server")
    monkeypatch.setenv("EVLOG_SESSION_SERVER_URL", fake.url)
    monkeypatch.setenv("EVLOG_SESSION_SERVER_PRODUCT", "envapp")
    monkeypatch.setenv("EVLOG_SESSION_SERVER_VERSION", "2.0")
    monkeypatch.setenv("EVLOG_SESSION_SERVER_API_KEY", SECRET)
    monkeypatch.setenv("EVLOG_SESSION_SERVER_HEARTBEAT_INTERVAL", "0")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "0.05")
    evlog.configure()
    evlog.log_event("from_env")
    assert evlog.flush()
    session = fake.only_session()
    assert (session.product, session.version) == ("envapp", "2.0")
    assert [e["name"] for e in session.events] == ["from_env"]
    assert fake.server.requests[0].header("Authorization") == f"Bearer {SECRET}"


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(evlog.ConfigError, match="refusing plain http"):
        SessionServerExporter(url="http://datacat.example.com:9090", product="a", version="1")
    SessionServerExporter(url="http://datacat.example.com:9090", product="a", version="1", allow_insecure_http=True)


def test_session_or_product_and_version_required() -> None:
    with pytest.raises(evlog.ConfigError, match="EVLOG_SESSION_SERVER_SESSION_ID"):
        SessionServerExporter(url="http://127.0.0.1:9", product="a")


def test_missing_url_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "session_server")
    with pytest.raises(evlog.ConfigError, match="EVLOG_SESSION_SERVER_URL"):
        evlog.configure()


# --- the real server ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def datacat_server(tmp_path: Path) -> Iterator[str]:
    binary = os.environ.get("EVLOG_TEST_DATACAT_SERVER")
    if not binary:
        pytest.skip("set EVLOG_TEST_DATACAT_SERVER to a built datacat-server binary to run this test")
    port = _free_port()
    config = {
        "data_path": str(tmp_path / "data"),
        "retention_days": 1,
        "cleanup_interval_hours": 24,
        "server_port": str(port),
        "heartbeat_timeout_seconds": 60,
        "api_key": SECRET,
        "require_api_key": True,
        "tls_cert_file": "",
        "tls_key_file": "",
        "log_file": str(tmp_path / "server.log"),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([shutil.which(binary) or binary], cwd=tmp_path)
    try:
        _wait_until_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"datacat-server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port of a process we do not control: no event to wait on
    pytest.fail("datacat-server did not start listening within 10 s")


def test_against_a_real_datacat_server(datacat_server: str) -> None:
    import requests

    evlog.configure(
        exporters={
            "session_server": {
                "url": datacat_server,
                "product": "evlog-test",
                "version": "1",
                "api_key": SECRET,
                "severity_in_category": True,
                "compress": True,
            }
        },
        **FAST,
    )
    info = ExceptionInfo("ValueError", "bad", ("Traceback", "ValueError: bad"), "/a.py", 3, "f")
    evlog.log_event("real", level="warning", category="ui", labels=["x"], data={"k": 1})
    evlog.log_event("boom", level="error", exception=info)
    assert evlog.flush(timeout=10)
    sid = evlog.stats()["session_server"].details["session_id"]
    assert evlog.stats()["session_server"].sent == 2
    assert evlog.shutdown(timeout=5)
    doc = requests.get(f"{datacat_server}/api/sessions/{sid}", headers={"Authorization": f"Bearer {SECRET}"}).json()
    by_name = {e["name"]: e for e in doc["events"]}
    assert (by_name["real"]["category"], by_name["real"]["group"]) == ("warning", "ui")
    assert by_name["boom"]["source_line"] == 3
    assert doc["ended_at"]
