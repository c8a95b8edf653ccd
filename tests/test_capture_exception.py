"""capture_exception, capturing_exceptions and the ExceptionInfo they build."""

from __future__ import annotations

import asyncio
import builtins
import json
import sys
from collections.abc import Iterator

import pytest

import evlog
from evlog import _exceptions_info
from evlog._exceptions_info import exception_info, qualified_name
from evlog.testing import capture_events


class PaymentError(Exception):
    pass


@pytest.fixture
def events() -> Iterator[list[evlog.Event]]:
    with capture_events() as captured:
        yield captured


def fail(exc: BaseException) -> None:
    raise exc


def test_defaults_inside_except(events: list[evlog.Event]) -> None:
    try:
        fail(ValueError("Invalid input provided"))
    except ValueError:
        evlog.capture_exception(data={"context": "user_input"})
    [event] = events
    assert event.name == "exception"
    assert event.level == "error"
    assert event.category == "exception"
    assert event.labels == ("exception", "ValueError")
    assert event.message == "Invalid input provided"
    assert event.data == {"context": "user_input"}
    assert event.exception is not None
    assert event.exception.exception_type == "ValueError"
    assert event.exception.exception_msg == "Invalid input provided"
    assert event.exception.source_function == "fail"
    assert event.exception.source_file == __file__


def test_caller_overrides_the_defaults(events: list[evlog.Event]) -> None:
    try:
        fail(PaymentError("declined"))
    except PaymentError as exc:
        evlog.capture_exception(
            exc, name="payment_failed", level="warning", category="payments", labels=["pay"], message="card"
        )
    [event] = events
    assert (event.name, event.level, event.category) == ("payment_failed", "warning", "payments")
    assert (event.labels, event.message) == (("pay",), "card")


def test_returns_the_event_id(events: list[evlog.Event]) -> None:
    event_id = evlog.capture_exception(ValueError("given, never raised"))
    assert [e.event_id for e in events] == [event_id]
    assert events[0].exception is not None
    assert events[0].exception.stacktrace == ("ValueError: given, never raised",)
    assert events[0].exception.source_file is None


def test_outside_except_without_exception_is_an_error() -> None:
    with pytest.raises(evlog.InvalidEventError, match=r"no exception to record.*inside an `except` block"):
        evlog.capture_exception()


@pytest.mark.parametrize(("bad", "shown"), [("oops", "str 'oops'"), (ValueError, "the class ValueError")])
def test_non_exception_is_an_error(bad: object, shown: str) -> None:
    with pytest.raises(evlog.InvalidEventError, match=f"needs an exception instance, got {shown}"):
        evlog.capture_exception(bad)  # type: ignore[arg-type]


def test_type_names_are_qualified_except_builtins() -> None:
    assert qualified_name(ValueError) == "ValueError"
    assert qualified_name(PaymentError) == f"{__name__}.PaymentError"
    assert qualified_name(json.JSONDecodeError) == "json.decoder.JSONDecodeError"


def test_stacktrace_is_a_list_of_lines() -> None:
    try:
        fail(KeyError("k"))
    except KeyError as exc:
        info = exception_info(exc)
    assert info.stacktrace[0] == "Traceback (most recent call last):"
    assert info.stacktrace[-1] == "KeyError: 'k'"
    assert all("\n" not in line for line in info.stacktrace)


def test_source_is_the_innermost_frame_of_app_code() -> None:
    try:
        json.loads("{")
    except ValueError as exc:
        info = exception_info(exc)
    assert any("json" in line and "decoder.py" in line for line in info.stacktrace)  # the innermost frames
    assert info.source_file == __file__
    assert info.source_function == "test_source_is_the_innermost_frame_of_app_code"


def test_cause_is_kept() -> None:
    try:
        try:
            fail(KeyError("card"))
        except KeyError as inner:
            raise PaymentError("declined") from inner
    except PaymentError as exc:
        info = exception_info(exc)
    assert info.cause is not None
    assert (info.cause.exception_type, info.cause.exception_msg) == ("KeyError", "'card'")
    assert info.cause.source_function == "fail"
    assert info.context is None
    assert "The above exception was the direct cause of the following exception:" in info.stacktrace


def test_context_is_kept_unless_suppressed() -> None:
    try:
        try:
            fail(KeyError("first"))
        except KeyError:
            fail(RuntimeError("while handling"))
    except RuntimeError as exc:
        info = exception_info(exc)
    assert info.cause is None
    assert info.context is not None
    assert info.context.exception_type == "KeyError"
    try:
        try:
            fail(KeyError("first"))
        except KeyError:
            raise RuntimeError("clean") from None
    except RuntimeError as exc:
        suppressed = exception_info(exc)
    assert suppressed.context is None


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are new in 3.11")
def test_exception_group_members_are_kept() -> None:
    group = getattr(builtins, "ExceptionGroup")  # noqa: B009 - the name does not exist on 3.10
    try:
        raise group("several", [ValueError("a"), PaymentError("b")])
    except Exception as exc:
        info = exception_info(exc)
    assert info.exception_type == "ExceptionGroup"
    assert [(m.exception_type, m.exception_msg) for m in info.exceptions] == [
        ("ValueError", "a"),
        (f"{__name__}.PaymentError", "b"),
    ]


def test_cyclic_chain_terminates() -> None:
    first, second = ValueError("first"), ValueError("second")
    first.__cause__, second.__cause__ = second, first
    info = exception_info(first)
    assert info.cause is not None
    assert info.cause.exception_msg == "second"
    assert info.cause.cause is None


def test_locals_are_not_collected_unless_enabled() -> None:
    def handler(password: str) -> None:
        raise PermissionError("denied")

    try:
        handler("".join(["hun", "ter2"]))  # so that the secret is not in the source line itself
    except PermissionError as exc:
        plain, with_locals = exception_info(exc), exception_info(exc, capture_locals=True)
    assert not any("hunter2" in line for line in plain.stacktrace)
    assert any("hunter2" in line for line in with_locals.stacktrace)


def test_str_that_raises_does_not_break_capture(events: list[evlog.Event]) -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    evlog.capture_exception(Nasty())
    assert events[0].exception is not None
    assert events[0].exception.exception_msg == "<str() of Nasty raised an exception>"


def test_huge_stacktrace_is_cut_in_the_middle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_exceptions_info, "MAX_STACK_LINES", 10)
    monkeypatch.setattr(_exceptions_info, "_HEAD_LINES", 3)

    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("bottom")
        deep(n - 1)

    try:
        deep(10)
    except ValueError as exc:
        info = exception_info(exc)
    assert len(info.stacktrace) == 10
    assert info.stacktrace[0] == "Traceback (most recent call last):"
    assert "lines omitted by evlog" in info.stacktrace[3]
    assert info.stacktrace[-1] == "ValueError: bottom"


# --- capturing_exceptions ------------------------------------------------------------------------------------


def test_context_manager_records_and_reraises(events: list[evlog.Event]) -> None:
    with pytest.raises(PaymentError), evlog.capturing_exceptions(category="payments", data={"order_id": 7}):
        fail(PaymentError("declined"))
    [event] = events
    assert (event.category, event.data, event.level) == ("payments", {"order_id": 7}, "error")


def test_decorator_records_and_reraises(events: list[evlog.Event]) -> None:
    @evlog.capturing_exceptions(name="job_failed")
    def job() -> None:
        fail(RuntimeError("job"))

    with pytest.raises(RuntimeError):
        job()
    assert [e.name for e in events] == ["job_failed"]


def test_async_decorator_records_and_reraises(events: list[evlog.Event]) -> None:
    @evlog.capturing_exceptions()
    async def job() -> int:
        fail(LookupError("async job"))
        return 1

    with pytest.raises(LookupError):
        asyncio.run(job())
    assert [e.message for e in events] == ["async job"]


def test_nested_blocks_record_once(events: list[evlog.Event]) -> None:
    with pytest.raises(ValueError, match="once"), evlog.capturing_exceptions(), evlog.capturing_exceptions():
        fail(ValueError("once"))
    assert len(events) == 1


def test_base_exceptions_pass_unrecorded_by_default(events: list[evlog.Event]) -> None:
    with pytest.raises(KeyboardInterrupt), evlog.capturing_exceptions():
        raise KeyboardInterrupt
    assert events == []


def test_bad_fields_never_replace_the_app_exception(
    events: list[evlog.Event], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(PaymentError), evlog.capturing_exceptions(level="loud"):
        fail(PaymentError("the real problem"))
    assert events == []
    assert any(r.name == "evlog" and "could not record PaymentError" in r.getMessage() for r in caplog.records)
