"""The uncaught-exception hooks: real crashing subprocesses checked through their jsonl output, and the hooks'
chaining, idempotence and restoration in process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import evlog
from evlog import _excepthook
from evlog.exporters.memory import MemoryExporter
from evlog.testing import capture_events

SCRIPTS = Path(__file__).parent / "crash_scripts"


@pytest.fixture(autouse=True)
def _remove_hooks() -> Iterator[None]:
    yield
    _excepthook.uninstall()


def run_script(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    out = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "EVLOG_EXPORTERS": "jsonl",
        "EVLOG_JSONL_PATH": str(out),
        "EVLOG_CAPTURE_EXCEPTIONS": "1",
        "EVLOG_FLUSH_INTERVAL": "60",
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    events = [json.loads(line) for line in out.read_text("utf-8").splitlines()] if out.exists() else []
    return proc, events


def crash_line(name: str) -> int:
    lines = (SCRIPTS / name).read_text("utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if "CRASH-LINE" in line)


# --- real processes ------------------------------------------------------------------------------------------


def test_main_thread_crash_is_delivered_before_exit(tmp_path: Path) -> None:
    proc, events = run_script("main_thread.py", tmp_path)
    assert proc.returncode == 1
    assert [e["name"] for e in events] == ["started", "exception"]
    event = events[1]
    assert event["level"] == "critical"
    assert event["category"] == "exception"
    assert event["labels"] == ["exception", "PaymentError"]
    assert event["message"] == "card declined"
    assert event["data"] == {"mechanism": "sys.excepthook", "handled": False, "thread": "MainThread"}
    exc = event["exception"]
    assert exc["exception_type"] == "crash_errors.PaymentError"
    assert exc["exception_msg"] == "card declined"
    assert exc["source_file"] == str(SCRIPTS / "main_thread.py")
    assert exc["source_line"] == crash_line("main_thread.py")
    assert exc["source_function"] == "charge"
    assert exc["stacktrace"][-1] == "crash_errors.PaymentError: card declined"
    assert not any(line.endswith("\n") for line in exc["stacktrace"])


def test_main_thread_crash_keeps_the_cause(tmp_path: Path) -> None:
    _proc, events = run_script("main_thread.py", tmp_path)
    exc = events[-1]["exception"]
    assert exc["cause"]["exception_type"] == "KeyError"
    assert exc["cause"]["exception_msg"] == "'4111'"
    assert exc["cause"]["source_function"] == "lookup"
    assert exc["cause"]["stacktrace"][-1] == "KeyError: '4111'"
    assert "The above exception was the direct cause of the following exception:" in exc["stacktrace"]
    assert "context" not in exc  # `raise ... from` hides the context, as Python's own display does


def test_main_thread_crash_still_prints_the_traceback(tmp_path: Path) -> None:
    proc, _events = run_script("main_thread.py", tmp_path)
    assert "Traceback (most recent call last):" in proc.stderr
    assert "crash_errors.PaymentError: card declined" in proc.stderr
    assert "KeyError: '4111'" in proc.stderr


def test_worker_thread_crash_is_recorded_and_the_process_goes_on(tmp_path: Path) -> None:
    proc, events = run_script("worker_thread.py", tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "main thread finished"
    assert "Exception in thread worker-1" in proc.stderr
    assert "ValueError: worker failed" in proc.stderr
    [event] = events
    assert (event["name"], event["level"], event["category"]) == ("exception", "critical", "exception")
    assert event["labels"] == ["exception", "ValueError"]
    assert event["message"] == "worker failed"
    assert event["data"] == {"mechanism": "threading.excepthook", "handled": False, "thread": "worker-1"}
    exc = event["exception"]
    assert (exc["exception_type"], exc["exception_msg"]) == ("ValueError", "worker failed")
    assert exc["source_file"] == str(SCRIPTS / "worker_thread.py")
    assert exc["source_line"] == crash_line("worker_thread.py")
    assert exc["source_function"] == "work"


def test_previous_hook_runs_after_the_event_was_delivered(tmp_path: Path) -> None:
    proc, events = run_script("previous_hook.py", tmp_path)
    assert proc.returncode == 1
    assert "app hook saw RuntimeError: boom; event already delivered: True" in proc.stderr
    assert [(e["name"], e["message"]) for e in events] == [("exception", "boom")]


def test_keyboard_interrupt_is_not_reported(tmp_path: Path) -> None:
    proc, events = run_script("keyboard_interrupt.py", tmp_path)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr
    assert [e["name"] for e in events] == ["started"]


# --- in process ----------------------------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def call_hook(exc: BaseException) -> None:
    sys.excepthook(type(exc), exc, exc.__traceback__)


def test_install_then_uninstall_restores_both_hooks() -> None:
    before_sys, before_thread = sys.excepthook, threading.excepthook
    _excepthook.install()
    assert sys.excepthook is not before_sys
    assert threading.excepthook is not before_thread
    _excepthook.uninstall()
    assert sys.excepthook is before_sys
    assert threading.excepthook is before_thread


def test_configure_installs_and_removes_the_hooks() -> None:
    before = sys.excepthook
    evlog.configure(exporters=[MemoryExporter()], capture_exceptions=True)
    assert sys.excepthook is not before
    evlog.configure(exporters=[MemoryExporter()], capture_exceptions=False)
    assert sys.excepthook is before


def test_installing_twice_records_once(capsys: pytest.CaptureFixture[str]) -> None:
    _excepthook.install()
    _excepthook.install()
    with capture_events() as events:
        call_hook(raised(ValueError("once")))
    assert [e.message for e in events] == ["once"]
    assert capsys.readouterr().err.count("ValueError: once") == 1


def test_uninstall_under_another_tools_hook_keeps_that_hook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []
    _excepthook.install()
    ours = sys.excepthook

    def other(t: type[BaseException], e: BaseException, tb: TracebackType | None) -> None:
        seen.append(str(e))
        ours(t, e, tb)

    monkeypatch.setattr(sys, "excepthook", other)
    _excepthook.uninstall()
    assert sys.excepthook is other
    with capture_events() as events:
        other(ValueError, ValueError("x"), None)
    assert events == []  # ours stays in the chain as a pass-through
    assert seen == ["x"]
    assert "ValueError: x" in capsys.readouterr().err


def test_main_hook_reports_the_crash_and_flushes_before_the_previous_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    class CrashAware(MemoryExporter):
        reasons: list[str] = []

        def note_crash(self, reason: str) -> None:
            self.reasons.append(reason)

    exporter = CrashAware()
    delivered_before_previous: list[int] = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: delivered_before_previous.append(len(exporter.events)))
    evlog.configure(exporters=[exporter], flush_interval=60, capture_exceptions=True)
    call_hook(raised(RuntimeError("fatal")))
    assert exporter.reasons == ["uncaught RuntimeError: fatal"]
    assert delivered_before_previous == [1]
    assert exporter.events[0].exception is not None


def test_thread_hook_records_and_calls_the_previous_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    previous: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: previous.append(args.thread.name))
    _excepthook.install()
    with capture_events() as events:
        thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
        thread.start()
        thread.join()
    assert previous == ["doomed"]
    [event] = events
    assert event.level == "critical"
    assert event.data["thread"] == "doomed"
    assert event.exception is not None
    assert event.exception.exception_type == "ZeroDivisionError"


def test_system_exit_ignored_by_default_but_configurable(capsys: pytest.CaptureFixture[str]) -> None:
    _excepthook.install()
    with capture_events() as events:
        call_hook(raised(SystemExit(3)))
    assert events == []
    _excepthook.install(ignore=())
    with capture_events() as events:
        call_hook(raised(KeyboardInterrupt()))
    assert [e.labels for e in events] == [("exception", "KeyboardInterrupt")]
    capsys.readouterr()


def test_hook_never_raises_and_still_calls_the_previous_one(monkeypatch: pytest.MonkeyPatch) -> None:
    previous: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: previous.append(e))
    _excepthook.install()

    def broken(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("evlog is broken")

    monkeypatch.setattr(_excepthook, "capture_exception", broken)
    exc = raised(ValueError("app error"))
    call_hook(exc)
    assert previous == [exc]


def test_an_exception_already_captured_is_not_recorded_again(capsys: pytest.CaptureFixture[str]) -> None:
    _excepthook.install()
    with capture_events() as events:
        exc = raised(ValueError("handled, then re-raised"))
        evlog.capture_exception(exc)
        call_hook(exc)
    assert [e.level for e in events] == ["error"]
    capsys.readouterr()


def test_asyncio_handler_records_callback_errors_and_chains() -> None:
    loop = asyncio.new_event_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    def boom() -> None:
        raise LookupError("in a callback")

    try:
        _excepthook.install(asyncio_loop=loop)
        with capture_events() as events:
            loop.call_soon(boom)
            loop.call_soon(loop.stop)
            loop.run_forever()
    finally:
        loop.close()
    assert [type(c["exception"]) for c in contexts] == [LookupError]
    [event] = events
    assert (event.level, event.message, event.data["mechanism"]) == ("critical", "in a callback", "asyncio")
    assert event.data["asyncio_message"].startswith("Exception in callback")


def test_uninstall_restores_the_loop_handler() -> None:
    loop = asyncio.new_event_loop()
    try:
        evlog.install_asyncio_handler(loop)
        evlog.install_asyncio_handler(loop)
        assert loop.get_exception_handler() is not None
        _excepthook.uninstall()
        assert loop.get_exception_handler() is None
    finally:
        loop.close()
