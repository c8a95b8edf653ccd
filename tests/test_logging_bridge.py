"""EvlogHandler: logging records become events, and evlog's own records never come back in."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

import evlog
from evlog._guard import guarded
from evlog.exporters.memory import MemoryExporter
from evlog.logging import EvlogHandler, level_for
from evlog.testing import capture_events


class Opaque:
    """A value with no JSON conversion rule."""


@pytest.fixture
def log() -> Iterator[logging.Logger]:
    """A logger of its own with only an EvlogHandler, so nothing else sees its records."""
    logger = logging.getLogger("app.bridge")
    handler = EvlogHandler()
    logger.addHandler(handler)
    logger.setLevel(1)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def events() -> Iterator[list[evlog.Event]]:
    with capture_events() as captured:
        yield captured


@pytest.mark.parametrize(
    ("levelno", "expected"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warning"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "critical"),
        (5, "debug"),
        (25, "info"),
        (45, "error"),
        (60, "critical"),
    ],
)
def test_levels_map_to_the_nearest_lower(
    log: logging.Logger, events: list[evlog.Event], levelno: int, expected: str
) -> None:
    log.log(levelno, "x")
    assert [e.level for e in events] == [expected]
    assert level_for(levelno) == expected


def test_record_fields(log: logging.Logger, events: list[evlog.Event]) -> None:
    log.warning("disk at %d%%", 93, extra={"disk": "/var", "host": "db1"})
    [event] = events
    assert event.name == "log.app.bridge"
    assert event.message == "disk at 93%"
    assert (event.category, event.labels) == ("log", ("log",))
    assert event.exception is None
    assert event.data["disk"] == "/var"
    assert event.data["host"] == "db1"
    assert event.data["logger"] == "app.bridge"
    assert event.data["file"] == __file__
    assert event.data["function"] == "test_record_fields"
    assert not {"args", "msg", "levelno", "pathname", "exc_info", "thread"} & set(event.data)


def test_exc_info_becomes_the_exception_fields(log: logging.Logger, events: list[evlog.Event]) -> None:
    try:
        raise ConnectionError("peer reset")
    except ConnectionError:
        log.exception("sync failed")
    [event] = events
    assert (event.level, event.message, event.category) == ("error", "sync failed", "exception")
    assert event.labels == ("log", "exception", "ConnectionError")
    assert event.exception is not None
    assert event.exception.exception_type == "ConnectionError"
    assert event.exception.exception_msg == "peer reset"
    assert event.exception.source_function == "test_exc_info_becomes_the_exception_fields"
    assert event.exception.stacktrace[-1] == "ConnectionError: peer reset"


def test_exception_outside_except_has_no_exception_fields(log: logging.Logger, events: list[evlog.Event]) -> None:
    log.exception("nothing is being handled")
    assert events[0].exception is None
    assert events[0].category == "log"


def test_handler_level_filters(events: list[evlog.Event]) -> None:
    handler = EvlogHandler(level=logging.WARNING)
    logger = logging.getLogger("app.filtered")
    logger.addHandler(handler)
    try:
        logger.info("ignored")
        logger.error("kept")
    finally:
        logger.removeHandler(handler)
    assert [e.message for e in events] == ["kept"]


def test_formatter_is_used_when_set(log: logging.Logger, events: list[evlog.Event]) -> None:
    log.handlers[0].setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    log.info("hello %s", "world")
    assert events[0].message == "[app.bridge] hello world"


def test_framework_style_logger_name(events: list[evlog.Event]) -> None:
    handler = EvlogHandler()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.error("Exception in ASGI application", exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert [(e.name, e.exception is not None) for e in events] == [("log.uvicorn.error", True)]


# --- no feedback ---------------------------------------------------------------------------------------------


def test_evlog_logger_records_are_ignored(events: list[evlog.Event]) -> None:
    handler = EvlogHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("evlog").warning("evlog: dropped 3 event(s)")
        logging.getLogger("evlog.exporters").warning("also evlog's")
        with guarded():
            logging.getLogger("urllib3").warning("emitted while evlog works")
    finally:
        root.removeHandler(handler)
    assert events == []


def test_records_from_evlog_threads_are_ignored(log: logging.Logger, events: list[evlog.Event]) -> None:
    thread = threading.Thread(target=lambda: log.warning("from an exporter's thread"), name="evlog-export-x")
    thread.start()
    thread.join()
    assert events == []


def test_no_recursion_when_evlog_warns_with_the_handler_installed(caplog: pytest.LogCaptureFixture) -> None:
    exporter = MemoryExporter()
    evlog.configure(exporters=[exporter], flush_interval=60)
    handler = EvlogHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        # A value JSON cannot hold makes evlog warn on its own logger (on the router thread) while converting.
        logging.getLogger("app").warning("odd value", extra={"odd": Opaque()})
        assert evlog.flush(5)
        evlog.log_event("marker")
        assert evlog.flush(5)
    finally:
        root.removeHandler(handler)
    assert [e.name for e in exporter.events] == ["log.app", "marker"]
    assert any(r.name == "evlog" and "placeholder" in r.getMessage() for r in caplog.records)  # it did warn


def test_a_failing_record_goes_to_handle_error(
    log: logging.Logger, events: list[evlog.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[logging.LogRecord] = []
    handler = log.handlers[0]
    monkeypatch.setattr(handler, "handleError", failures.append)
    monkeypatch.setattr("evlog.logging.log_event", lambda *a, **k: 1 / 0)
    log.error("boom")
    assert [r.getMessage() for r in failures] == ["boom"]
    assert events == []
