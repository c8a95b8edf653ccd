"""The slow half of argument checking: building clear ``InvalidEventError`` messages, and the rarer checks.

``log_event`` does the cheap type tests inline and calls into here only when something is off or when an
uncommon argument (user, timestamp, a non-dict mapping...) needs a closer look, so the common call stays fast.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any, NoReturn

from evlog._errors import InvalidEventError
from evlog._event import ExceptionInfo, Level, User

__all__ = ["bad", "check_data", "check_labels", "check_rare"]

_LEVEL_NAMES = ", ".join(repr(level.value) for level in Level)


def _show(value: Any) -> str:
    text = repr(value[:100] if isinstance(value, str) else value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def bad(argument: str, value: Any) -> NoReturn:
    """Raise the error for ``argument`` given ``value``."""
    if argument == "name":
        if isinstance(value, str):
            raise InvalidEventError("name must be a non-empty string, got an empty string")
        raise InvalidEventError(f"name must be a non-empty string, got {_show(value)}")
    if argument == "level":
        hint = ""
        if isinstance(value, str) and value.lower() in {level.value for level in Level}:
            hint = f" (levels are lower case: {value.lower()!r})"
        elif isinstance(value, str) and value.lower() == "warn":
            hint = " (use 'warning')"
        elif isinstance(value, int):
            hint = " (numeric levels are not accepted; use the level's name)"
        raise InvalidEventError(f"level must be one of {_LEVEL_NAMES}, got {_show(value)}{hint}")
    if argument in ("category", "message", "session_id", "event_id"):
        raise InvalidEventError(f"{argument} must be a string or None, got {_show(value)}")
    raise InvalidEventError(f"{argument} is invalid: got {_show(value)}")  # pragma: no cover


def check_labels(labels: Any) -> tuple[str, ...]:
    if isinstance(labels, str):
        raise InvalidEventError(
            f"labels must be a list of strings, got the string {labels!r} (write labels=[{labels!r}])"
        )
    if not isinstance(labels, (list, tuple, set, frozenset)):
        raise InvalidEventError(f"labels must be a list of strings, got {_show(labels)}")
    for index, label in enumerate(labels):
        if type(label) is not str:
            raise InvalidEventError(f"labels must be a list of strings, but labels[{index}] is {_show(label)}")
    return tuple(labels)


def check_data(data: Any) -> dict[str, Any]:
    """A shallow dict copy of ``data`` after checking its keys; values are converted later, on the worker."""
    if not isinstance(data, Mapping):
        raise InvalidEventError(f"data must be a mapping with string keys (e.g. a dict), got {_show(data)}")
    for key in data:
        if type(key) is not str:
            raise InvalidEventError(
                f"data keys must be strings, got key {_show(key)}; convert it, e.g. data={{str(key): ...}}"
            )
    return dict(data)


def check_rare(timestamp: Any, event_id: Any, user: Any, session_id: Any, value: Any, exception: Any) -> None:
    if timestamp is not None:
        if not isinstance(timestamp, _dt.datetime):
            raise InvalidEventError(f"timestamp must be a timezone-aware datetime, got {_show(timestamp)}")
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise InvalidEventError(
                "timestamp must be timezone-aware (a naive datetime is ambiguous); use e.g. datetime.now(timezone.utc)"
            )
        try:
            timestamp.astimezone(_dt.timezone.utc)
        except (OverflowError, ValueError) as exc:
            raise InvalidEventError(
                f"timestamp {_show(timestamp)} cannot be expressed in UTC (it falls outside years 1-9999)"
            ) from exc
    if event_id is not None and (type(event_id) is not str or not event_id):
        raise InvalidEventError(f"event_id must be a non-empty string or None, got {_show(event_id)}")
    if user is not None and not isinstance(user, User):
        hint = " (build one with evlog.User(id=..., email=...))" if isinstance(user, (dict, str)) else ""
        raise InvalidEventError(f"user must be an evlog.User or None, got {_show(user)}{hint}")
    if session_id is not None and type(session_id) is not str:
        bad("session_id", session_id)
    if value is not None and (type(value) not in (int, float, str)):
        raise InvalidEventError(f"value must be a number or a string, got {_show(value)}")
    if exception is not None and not isinstance(exception, ExceptionInfo):
        raise InvalidEventError(
            f"exception must be an evlog.ExceptionInfo or None, got {_show(exception)}"
            " (to record a Python exception, use evlog.capture_exception())"
        )
