"""The console, jsonl and memory exporters, and the helpers for users' own tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evlog
from evlog import Event, User
from evlog.exporters.console import ConsoleExporter
from evlog.exporters.jsonl import JsonlExporter
from evlog.exporters.memory import MemoryExporter
from evlog.testing import capture_events
from support.events import make_event


def test_console_is_the_default_and_prints_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    evlog.log_event(
        "database_query_slow",
        level="warning",
        category="db",
        labels=["sql"],
        message="slow query",
        data={"duration_ms": 5000},
    )
    assert evlog.flush(5)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].endswith('WARNING  database_query_slow [db] slow query labels=sql {"duration_ms": 5000}')
    assert [type(p.exporter) for p in evlog._api.current_client().pipelines] == [ConsoleExporter]  # type: ignore[union-attr]


def test_console_can_write_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    evlog.configure(exporters={"console": {"stdout": True}})
    evlog.log_event("hello")
    assert evlog.flush(5)
    assert "hello" in capsys.readouterr().out


def test_jsonl_appends_one_object_per_event(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"
    evlog.configure(exporters={"jsonl": {"path": str(path)}}, flush_interval=0.05)
    evlog.log_event("signup", category="ui", labels=["web"], data={"plan": "pro"}, user=User(id="u1"), value=3)
    evlog.log_event("second")
    assert evlog.flush(5)
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["name"] == "signup"
    assert first["timestamp"].endswith("+00:00")
    assert (first["level"], first["category"], first["labels"]) == ("info", "ui", ["web"])
    assert (first["data"], first["user"], first["value"]) == ({"plan": "pro"}, {"id": "u1"}, 3)
    assert second["name"] == "second" and second["data"] == {} and "user" not in second
    assert first["event_id"] != second["event_id"]


def test_jsonl_reports_an_unwritable_path_as_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    exporter = JsonlExporter(path=str(blocker / "events.jsonl"))
    result = exporter.export(evlog.Batch(events=(make_event(),)))
    assert result.status is evlog.ExportStatus.RETRY
    assert "cannot write" in result.message


def test_memory_keeps_events_and_can_cap_them() -> None:
    memory = MemoryExporter(max_events=2)
    evlog.configure(exporters=[memory], flush_interval=0.05)
    for name in ("a", "b", "c"):
        evlog.log_event(name)
    assert evlog.flush(5)
    assert [e.name for e in memory.events] == ["b", "c"]
    memory.clear()
    assert memory.events == []


def test_capture_events_is_synchronous_and_restores_the_configuration() -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05)
    with capture_events() as events:
        evlog.log_event("captured", data={"k": 1})
        assert [e.name for e in events] == ["captured"]
    evlog.log_event("exported")
    assert evlog.flush(5)
    assert [e.name for e in memory.events] == ["exported"]


def test_the_pytest_fixture_captures_events(evlog_events: list[Event]) -> None:
    evlog.log_event("from the fixture")
    assert [e.name for e in evlog_events] == ["from the fixture"]
