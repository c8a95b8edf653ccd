"""structlog's processor and loguru's sink: each log call an event, with the bound context and the exception."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import structlog
from loguru import logger as loguru_logger

import evlog
from evlog import User
from evlog.integrations.loguru import evlog_sink
from evlog.integrations.structlog import EvlogProcessor
from evlog.testing import capture_events


@pytest.fixture
def slog() -> Iterator[structlog.stdlib.BoundLogger]:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            EvlogProcessor(level="info"),
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    yield structlog.get_logger().bind(logger="shop")  # the key structlog.stdlib.add_logger_name sets
    structlog.reset_defaults()


@pytest.fixture
def loguru_sink() -> Iterator[None]:
    sink_id = loguru_logger.add(evlog_sink, level="INFO")
    yield
    loguru_logger.remove(sink_id)


def test_structlog_calls_become_events_with_context_data_and_exceptions(slog: structlog.stdlib.BoundLogger) -> None:
    with capture_events() as events, evlog.context(user=User(id="u-1")):
        slog.debug("below the processor's level")
        slog.info("cart updated", cart_id="c-1", items=3)
        try:
            raise KeyError("total")
        except KeyError:
            slog.exception("checkout failed", cart_id="c-1")
    updated, failed = events
    assert (updated.name, updated.level, updated.message, updated.category) == (
        "log.shop",
        "info",
        "cart updated",
        "log",
    )
    assert updated.data == {"cart_id": "c-1", "items": 3, "logger": "shop"}
    assert updated.user == User(id="u-1")
    assert (failed.level, failed.category, failed.labels) == ("error", "exception", ("log", "exception", "KeyError"))
    assert failed.exception is not None and failed.exception.exception_type == "KeyError"
    assert failed.user == User(id="u-1") and failed.data["cart_id"] == "c-1"


def test_structlog_output_is_unchanged_by_the_processor(slog: structlog.stdlib.BoundLogger) -> None:
    with capture_events():
        assert slog.info("hello", n=1) == "logger='shop' n=1 event='hello' level='info'"


def test_a_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        EvlogProcessor(level="loud")


@pytest.mark.usefixtures("loguru_sink")
def test_loguru_messages_become_events_with_context_extra_and_exceptions() -> None:
    with capture_events() as events, evlog.context(user=User(id="u-2")):
        loguru_logger.debug("below the sink's level")
        loguru_logger.bind(cart_id="c-2").success("paid {} EUR", 12)
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            loguru_logger.exception("checkout failed")
    paid, failed = events
    assert (paid.name, paid.level, paid.message) == (f"log.{__name__}", "info", "paid 12 EUR")
    assert paid.data["cart_id"] == "c-2" and paid.data["function"] == (
        "test_loguru_messages_become_events_with_context_extra_and_exceptions"
    )
    assert paid.user == User(id="u-2") == failed.user
    assert (failed.level, failed.labels) == ("error", ("log", "exception", "ZeroDivisionError"))
    assert failed.exception is not None and failed.exception.exception_type == "ZeroDivisionError"


@pytest.mark.usefixtures("loguru_sink")
def test_loguru_messages_from_two_threads_carry_each_threads_context() -> None:
    both_bound = threading.Barrier(2, timeout=10)

    def work(user: str) -> None:
        with evlog.context(user=User(id=user)):
            both_bound.wait()
            loguru_logger.info("working for {}", user)

    threads = [threading.Thread(target=work, args=(u,)) for u in ("ann", "ben")]
    with capture_events() as events:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted((e.message, e.user.id) for e in events if e.user) == [
        ("working for ann", "ann"),
        ("working for ben", "ben"),
    ]
