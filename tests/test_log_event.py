"""``log_event``: what it accepts, the clear errors it raises, and the event it builds."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

import evlog
from evlog import ExceptionInfo, InvalidEventError, Level, User
from evlog.testing import capture_events


def test_an_event_carries_every_argument() -> None:
    user = User(id="u1", email="a@example.com", custom={"plan": "pro"}, custom_ids={"stableID": "s1"})
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    info = ExceptionInfo(exception_type="ValueError", exception_msg="bad")
    with capture_events() as events:
        evlog.log_event(
            "database_query_slow",
            level="warning",
            category="db",
            labels=["sql", "slow"],
            message="slow query",
            data={"duration_ms": 5000},
            timestamp=stamp,
            event_id="ev-1",
            user=user,
            session_id="s-9",
            value=12.5,
            exception=info,
        )
    (event,) = events
    assert (event.name, event.level, event.category, event.labels) == (
        "database_query_slow",
        Level.WARNING,
        "db",
        ("sql", "slow"),
    )
    assert (event.message, event.data, event.event_id) == ("slow query", {"duration_ms": 5000}, "ev-1")
    assert event.timestamp == stamp and event.timestamp.tzinfo == dt.timezone.utc
    assert (event.user, event.session_id, event.value, event.exception) == (user, "s-9", 12.5, info)


@freeze_time("2026-11-22 12:34:56.789012")
def test_defaults_and_the_timestamp_taken_at_the_call() -> None:
    with capture_events() as events:
        evlog.log_event("user_logged_in", data={"username": "alice"})
    (event,) = events
    assert event.level is Level.INFO
    assert (event.category, event.labels, event.message, event.user) == (None, (), None, None)
    assert event.timestamp == dt.datetime(2026, 11, 22, 12, 34, 56, 789012, tzinfo=dt.timezone.utc)
    assert uuid.UUID(event.event_id).version == 4


def test_event_ids_are_unique() -> None:
    with capture_events() as events:
        for _ in range(1000):
            evlog.log_event("e")
    assert len({e.event_id for e in events}) == 1000


def test_data_is_copied_at_the_call() -> None:
    data = {"step": 1}
    with capture_events() as events:
        evlog.log_event("e", data=data)
        data["step"] = 2
    assert events[0].data == {"step": 1}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": ""}, "name must be a non-empty string, got an empty string"),
        ({"name": 42}, "name must be a non-empty string, got int 42"),
        ({"name": "e", "level": "INFO"}, "levels are lower case: 'info'"),
        ({"name": "e", "level": "warn"}, "use 'warning'"),
        ({"name": "e", "level": 20}, "numeric levels are not accepted"),
        ({"name": "e", "category": 3}, "category must be a string or None, got int 3"),
        ({"name": "e", "labels": "sql"}, "write labels=['sql']"),
        ({"name": "e", "labels": ["ok", 2]}, "labels[1] is int 2"),
        ({"name": "e", "message": b"x"}, "message must be a string or None"),
        ({"name": "e", "data": [("a", 1)]}, "data must be a mapping with string keys"),
        ({"name": "e", "data": {1: "a"}}, "data keys must be strings, got key int 1"),
        ({"name": "e", "timestamp": dt.datetime(2026, 1, 1)}, "timestamp must be timezone-aware"),
        ({"name": "e", "timestamp": 1700000000}, "timestamp must be a timezone-aware datetime"),
        ({"name": "e", "event_id": ""}, "event_id must be a non-empty string"),
        ({"name": "e", "user": {"id": "u"}}, "build one with evlog.User"),
        ({"name": "e", "session_id": 5}, "session_id must be a string or None"),
        ({"name": "e", "value": True}, "value must be a number or a string, got bool True"),
        ({"name": "e", "exception": ValueError("x")}, "use evlog.capture_exception()"),
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs: dict[str, Any], expected: str) -> None:
    with capture_events() as events, pytest.raises(InvalidEventError) as info:
        evlog.log_event(**kwargs)
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)
    assert events == []


def test_user_fields_are_checked_when_the_user_is_built() -> None:
    with pytest.raises(InvalidEventError, match=r"User\.email must be a string"):
        User(id="u", email=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match=r"User.custom_ids\['device'\] must be a string"):
        User(custom_ids={"device": 7})  # type: ignore[dict-item]


def test_user_repr_hides_contact_details() -> None:
    text = repr(User(id="u1", email="alice@example.com", phone="+15551234567", ip="10.1.2.3"))
    assert "u1" in text
    assert "alice" not in text and "5551234567" not in text and "10.1.2.3" not in text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_anything = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.booleans(),
    st.lists(st.text(), max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(), _json, max_size=3),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.sampled_from(list(Level)),
    st.sampled_from(["debug", "info", "warning", "error", "critical", "INFO", "warn", ""]),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.builds(User, id=st.none() | st.text()),
)


@settings(max_examples=300, deadline=None)
@given(
    name=_anything,
    level=_anything,
    category=_anything,
    labels=_anything,
    message=_anything,
    data=_anything,
    timestamp=_anything,
    event_id=_anything,
    user=_anything,
    session_id=_anything,
    value=_anything,
)
def test_any_arguments_either_make_an_event_or_raise_invalid_event_error(**kwargs: Any) -> None:
    with capture_events() as events:
        try:
            evlog.log_event(**kwargs)
        except InvalidEventError:
            assert events == []
            return
    (event,) = events
    assert event.name == kwargs["name"]
    assert event.level.value == kwargs["level"]
    import json

    json.dumps(event.data, allow_nan=False)  # whatever came in, the data is JSON now
