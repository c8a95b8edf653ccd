"""The tuple ``log_event`` queues, and turning it into an ``Event`` on a background thread.

Why a tuple: building an attrs ``Event`` (frozen, slotted, with ids and a UTC datetime) costs more than the
whole budget of ``log_event``. So the app thread queues the arguments as they came, and the router builds
each event once, off the app's thread. The layout lives here, next to the only code that reads it.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
from typing import Any

from evlog._accounting import Reporter
from evlog._context import Bound
from evlog._event import Event, Level
from evlog._values import to_json_data

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
NO_RARE = (None, None, None, None, None, None, None)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROS = _dt.timedelta(microseconds=1)

# Event ids: random UUID4s from a private generator (an app calling random.seed() cannot make ids repeat),
# reseeded in forked children. Formatting them by hand is three times cheaper than uuid.uuid4().
_rng = random.Random(os.urandom(32))
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC << 60))
_UUID4_SET = (0x4000 << 64) | (0x8 << 60)


def new_event_id() -> str:
    """A random UUID4 string, unique across processes."""
    h = f"{(_rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reseed_after_fork() -> None:
    """A forked child starts with its parent's generator state: without this, both would make the same ids."""
    _rng.seed(os.urandom(32))


def _to_datetime(stamp: Any) -> _dt.datetime:
    if type(stamp) is int:
        return _EPOCH + ((stamp + 500) // 1000) * _MICROS  # nearest microsecond
    moment: _dt.datetime = stamp
    return moment.astimezone(_UTC)


def materialize(raw: Raw, reporter: Reporter) -> Event:
    """Build the immutable event from log_event's tuple (on a background thread)."""
    name, lvl, category, labels, message, data, stamp, rare = raw
    fields: tuple[Any, ...] = (*NO_RARE[:6], rare) if type(rare) is Bound else (rare or NO_RARE)
    event_id, user, session_id, value, exc, trace, bound = fields
    if bound is not None:
        # What the call says wins; data keys merge (the call's win) and labels add up.
        user = user if user is not None else bound.user
        session_id = session_id if session_id is not None else bound.session_id
        category = category if category is not None else bound.category
        if bound.labels:
            labels = bound.labels + tuple(label for label in labels or () if label not in bound.labels)
        if bound.data:
            data = {**bound.data, **data} if data else dict(bound.data)
    if data:
        data, problems = to_json_data(data)
        for problem in problems:
            reporter.warn(
                f"data:{problem.split(':', 1)[0]}",
                f"event {name!r}: a data value JSON cannot hold was replaced by a placeholder ({problem})",
            )
    return Event(
        name=name,
        timestamp=_to_datetime(stamp),
        event_id=event_id or new_event_id(),
        level=_LEVEL_OF[lvl],
        category=category,
        labels=labels or (),
        message=message,
        data=data or {},
        user=user,
        session_id=session_id,
        value=value,
        exception=exc,
        trace=trace,
    )
