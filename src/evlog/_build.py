"""The tuple ``log_event`` queues, and turning it into an ``Event`` on a background thread.

Why a tuple: building an attrs ``Event`` (frozen, slotted, with ids and a UTC datetime) costs more than the
whole budget of ``log_event``. So the app thread queues the arguments as they came, and the router builds
each event once, off the app's thread. The layout lives here, next to the only code that reads it.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import random
from typing import Any

import attrs

from evlog._accounting import Reporter
from evlog._context import Bound
from evlog._event import Event, ExceptionInfo, Level, User
from evlog._values import MAX_DEPTH, MAX_EXACT_INT, clean_text, to_json_data, to_json_value

__all__ = ["LEVELS", "NO_RARE", "Raw", "materialize", "new_event_id", "reseed_after_fork"]

_UTC = _dt.timezone.utc

#: ``log_event`` queues the level's plain string: a tuple holding only strings, numbers and None can be
#: untracked by the garbage collector, which otherwise re-scans every queued event at each collection (a third
#: of the cost of a call). Level members hash like their strings, so both spellings find the entry.
LEVELS: dict[Any, str] = {level.value: level.value for level in Level}
_LEVEL_OF: dict[str, Level] = {level.value: level for level in Level}

#: The queued tuple, read by position:
#: ``(name, level, category, labels, message, data, timestamp_or_ns, rare)`` where ``rare`` is None or
#: ``(event_id, user, session_id, value, exception, trace, bound)``: fields most calls leave out, packed only
#: when given, because every slot of the tuple costs every call (``bound``: the context bound at the call). When
#: the only rare thing is a bound context, ``rare`` is that ``Bound`` itself.
Raw = tuple[Any, ...]
NO_RARE = (None, None, None, None, None, None)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROS = _dt.timedelta(microseconds=1)

# Event ids: random UUID4s from a private generator (an app calling random.seed() cannot make ids repeat),
# reseeded in forked children. Formatting them by hand is three times cheaper than uuid.uuid4().
_rng = random.Random(os.urandom(32))
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC << 60))
_UUID4_SET = (0x4000 << 64) | (0x8 << 60)


def new_event_id() -> str:
    """A random UUID4 string, unique across processes."""
    h = ((_rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reseed_after_fork() -> None:
    """A forked child starts with its parent's generator state: without this, both would make the same ids."""
    _rng.seed(os.urandom(32))


def _to_datetime(stamp: Any) -> _dt.datetime:
    if type(stamp) is int:
        return _EPOCH + ((stamp + 500) // 1000) * _MICROS  # nearest microsecond
    moment: _dt.datetime = stamp
    return moment.astimezone(_UTC)


#: How much of a name or value a warning quotes.
QUOTE_LIMIT = 80
_USER_TEXT = ("id", "email", "phone", "ip", "user_agent", "country", "locale", "app_version")


def quote(text: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(text)`` cut to about ``limit`` characters, for log lines (a 1 MB name is not quoted whole)."""
    shown = repr(text[: limit + 1] if isinstance(text, str) else text)
    return shown if len(shown) <= limit + 2 else shown[:limit] + "..."


def _report(reporter: Reporter, name: str, field: str, problems: list[str]) -> None:
    for problem in problems:
        reporter.warn(
            f"data:{problem.split(':', 1)[0]}",
            f"event {quote(name)}: a {field} value JSON cannot hold was replaced by a placeholder ({problem})",
        )


def _text(value: Any, problems: list[str]) -> str:
    """Any value as text that UTF-8 can encode: bytes are decoded (bad bytes become U+FFFD)."""
    if type(value) is str:
        return clean_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    converted, found = to_json_value(value)
    problems.extend(found)
    return converted if type(converted) is str else clean_text(repr(converted))


def _opt_text(value: Any, problems: list[str]) -> str | None:
    return None if value is None else _text(value, problems)


#: The last user without dicts that was cleaned, and the result: apps pass the same User to many events in a
#: row (``set_user`` for a request), and a user without mutable dicts cannot have changed meanwhile.
_last_user: tuple[Any, Any] = (None, None)


def _clean_user(user: User, problems: list[str]) -> User:
    """A copy whose free-form fields follow the conversion rules (and do not share the app's dicts)."""
    global _last_user
    last_in, last_out = _last_user
    if user is last_in:
        return last_out  # type: ignore[no-any-return]
    cleaned = _clean_user_fields(user, problems)
    if not user.custom and not user.private_attributes and not user.custom_ids:
        _last_user = (user, cleaned)
    return cleaned


def _clean_user_fields(user: User, problems: list[str]) -> User:
    changes: dict[str, Any] = {}
    for field in _USER_TEXT:
        value = getattr(user, field)
        if field == "id" and type(value) is int:
            if not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:  # the integer rule: exact text past 2**53
                changes[field] = to_json_value(value)[0]
            continue  # an integer id stays one: each exporter sends it in its backend's form
        if value is not None and (type(value) is not str or not value.isascii()):
            changes[field] = _text(value, problems)
    if user.custom:
        changes["custom"] = to_json_data(user.custom)
    if user.private_attributes:
        changes["private_attributes"] = to_json_data(user.private_attributes)
    if user.custom_ids:
        changes["custom_ids"] = {clean_text(str(k)): _text(v, problems) for k, v in user.custom_ids.items()}
    for key in ("custom", "private_attributes"):
        if key in changes:
            changes[key], found = changes[key]
            problems.extend(found)
    return attrs.evolve(user, **changes) if changes else user


def _clean_exception(info: Any, problems: list[str], depth: int = 0) -> ExceptionInfo | None:
    """A copy with text fields as text, ``stacktrace`` a tuple of lines and ``source_line`` an int or None."""
    if not isinstance(info, ExceptionInfo) or depth > MAX_DEPTH:
        return None
    trace = info.stacktrace
    if isinstance(trace, str):
        lines: tuple[str, ...] = tuple(trace.splitlines())
    elif isinstance(trace, (list, tuple)):
        lines = tuple(_text(line, problems) for line in trace)
    else:
        lines = (_text(trace, problems),) if trace else ()
    line = info.source_line
    subs = tuple(_clean_exception(sub, problems, depth + 1) for sub in info.exceptions or ())
    return ExceptionInfo(
        exception_type=_text(info.exception_type, problems),
        exception_msg=_text(info.exception_msg, problems),
        stacktrace=lines,
        source_file=_opt_text(info.source_file, problems),
        source_line=line if type(line) is int and -MAX_EXACT_INT <= line <= MAX_EXACT_INT else None,
        source_function=_opt_text(info.source_function, problems),
        cause=_clean_exception(info.cause, problems, depth + 1),
        context=_clean_exception(info.context, problems, depth + 1),
        exceptions=tuple(sub for sub in subs if sub is not None),
    )


def _clean_value(value: Any) -> Any:
    tp = type(value)
    if tp is str:
        return clean_text(value)
    if tp is int:
        return value if -MAX_EXACT_INT <= value <= MAX_EXACT_INT else to_json_value(value)[0]
    if tp is float and not math.isfinite(value):
        return to_json_value(value)[0]
    return value


def _clean_rare(rare: tuple[Any, ...], name: str, reporter: Reporter) -> tuple[Any, ...]:
    event_id, user, session_id, value, exc, trace = rare
    problems: list[str] = []
    if user is not None:
        user = _clean_user(user, problems)
        _report(reporter, name, "user", problems)
        problems = []
    if exc is not None:
        exc = _clean_exception(exc, problems)
        _report(reporter, name, "exception", problems)
    if event_id is not None:
        event_id = clean_text(event_id)
    if session_id is not None:
        session_id = clean_text(session_id)
    if value is not None:
        value = _clean_value(value)
    return event_id, user, session_id, value, exc, trace


def materialize(raw: Raw, reporter: Reporter) -> Event:
    """Build the immutable event from log_event's tuple (on a background thread).

    Every free-form value goes through the conversion rules (``_values``): what comes out can be encoded as
    JSON by any exporter. Conversion never raises; a value it cannot convert becomes a placeholder, reported.
    """
    name, lvl, category, labels, message, data, stamp, rare = raw
    bound = None
    if type(rare) is Bound:  # only a bound context, with no rare argument
        rare, bound = None, rare
    elif rare is not None and len(rare) > 6:
        rare, bound = rare[:6], rare[6]
    event_id, user, session_id, value, exc, trace = NO_RARE if rare is None else _clean_rare(rare, name, reporter)
    if bound is not None:
        # What the call says wins; data keys merge (the call's win) and labels add up.
        if user is None and bound.user is not None:
            problems: list[str] = []
            user = _clean_user(bound.user, problems)
            _report(reporter, name, "user", problems)
        if session_id is None and bound.session_id is not None:
            session_id = clean_text(bound.session_id)
        if category is None:
            category = bound.category
        if bound.labels:
            labels = bound.labels + tuple(label for label in labels or () if label not in bound.labels)
        if bound.data:
            data = {**bound.data, **data} if data else dict(bound.data)
    if not name.isascii():
        name = clean_text(name)
    if category is not None and not category.isascii():
        category = clean_text(category)
    if message is not None and not message.isascii():
        message = clean_text(message)
    if labels and not all(label.isascii() for label in labels):
        labels = tuple(clean_text(label) for label in labels)
    if data:
        data, problems = to_json_data(data)
        if problems:
            _report(reporter, name, "data", problems)
    # Positional arguments, in the field order of Event: a third cheaper than keywords, on every event.
    return Event(
        name,
        _to_datetime(stamp),
        event_id or new_event_id(),
        _LEVEL_OF[lvl],
        category,
        labels or (),
        message,
        data or {},
        user,
        session_id,
        value,
        exc,
        trace,
    )
