"""``evlog ui``: its arguments, files it can show, and that it ends cleanly."""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import threading
import uuid
from pathlib import Path

import pytest

import evlog
from evlog._spool import Spool
from evlog.cli import _ui
from evlog.cli import parser as cli_parser
from evlog.viewer._files import read_events


def _args(*argv: str) -> argparse.Namespace:
    return cli_parser().parse_args(["ui", *argv])


def test_a_host_that_is_not_loopback_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert _ui.run(_args("--host", "0.0.0.0", "--port", "0")) == 2
    assert "loopback only" in capsys.readouterr().err


def test_a_jsonl_file_s_events_are_read_and_bad_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"name": "a", "level": "info"}), "{torn", json.dumps([1]), json.dumps({"name": "b"})]
    path.write_text("\n".join(lines) + "\n")
    assert [e["name"] for e in read_events(path)] == ["a", "b"]


def test_a_spool_file_is_read_without_changing_it(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path, max_bytes=10_000_000, max_age=3600, warn=pytest.fail)
    assert spool is not None
    event = evlog.Event(
        name="kept", timestamp=_dt.datetime.now(_dt.timezone.utc), event_id=uuid.uuid4().hex, data={"n": 1}
    )
    spool.append([(event, {"statsig"})])
    (path,) = tmp_path.glob("*.evspool")
    try:
        events = read_events(path)
        still_pending = [e.name for _seq, e in spool.pending("statsig", limit=10)]
    finally:
        spool.close()
    assert [(e["name"], e["data"]) for e in events] == [("kept", {"n": 1})]
    assert still_pending == ["kept"]


def test_ui_serves_a_file_s_events_and_ends_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"name": "from_file", "level": "warning"}) + "\n")
    stop = threading.Event()
    status: list[int] = []
    runner = threading.Thread(
        target=lambda: status.append(_ui.run(_args("--port", "0", "--file", str(path)), stop=stop))
    )
    runner.start()
    try:
        url = _wait_for_url(capsys)
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
        conn.request("GET", "/api/events")
        page = json.loads(conn.getresponse().read())
        conn.close()
    finally:
        stop.set()
        runner.join(10)
    assert [(e["name"], e["source"]) for e in page["events"]] == [("from_file", f"file {path}")]
    assert status == [0]


def _wait_for_url(capsys: pytest.CaptureFixture[str]) -> str:
    out = ""
    for _ in range(500):  # the command prints its address once it listens
        out += capsys.readouterr().out
        if "http://" in out:
            return out.split("evlog viewer on ", 1)[1].split()[0]
        threading.Event().wait(0.01)
    raise AssertionError(f"evlog ui never said where it listens: {out!r}")


def test_a_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _ui.run(_args("--port", "0", "--file", str(tmp_path / "nope.jsonl"))) == 1
    assert "cannot read" in capsys.readouterr().err
