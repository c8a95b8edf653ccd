"""Bound context: said once, carried by every event logged in that thread or task, built on the worker."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import evlog
from evlog import InvalidEventError, User
from evlog.exporters.memory import MemoryExporter


@pytest.fixture(autouse=True)
def _fresh_context() -> None:
    evlog.clear_context()


def test_bind_adds_who_and_where_to_every_event() -> None:
    from evlog.testing import capture_events

    evlog.bind(user=User(id="u-42"), session_id="s-9", category="checkout", labels=["web"], data={"region": "eu"})
    with capture_events() as events:
        evlog.log_event("viewed")
        evlog.log_event("paid", category="payments", labels=["card", "web"], data={"region": "us", "total": 3})
    viewed, paid = events
    assert (viewed.user, viewed.session_id, viewed.category, viewed.labels, viewed.data) == (
        User(id="u-42"),
        "s-9",
        "checkout",
        ("web",),
        {"region": "eu"},
    )
    assert paid.category == "payments"  # explicit arguments win
    assert paid.labels == ("web", "card")  # labels add up, once each
    assert paid.data == {"region": "us", "total": 3}  # data keys merge, the call's win


def test_nested_context_blocks_restore_the_outer_context() -> None:
    from evlog.testing import capture_events

    with capture_events() as events:
        with evlog.context(user=User(id="outer"), data={"a": 1}):
            with evlog.context(user=User(id="inner"), data={"b": 2}):
                evlog.log_event("inside")
            evlog.log_event("after inner")
        evlog.log_event("outside")
    inside, after, outside = events
    assert (inside.user, inside.data) == (User(id="inner"), {"a": 1, "b": 2})
    assert (after.user, after.data) == (User(id="outer"), {"a": 1})
    assert (outside.user, outside.data) == (None, {})


def test_asyncio_tasks_keep_their_own_context() -> None:
    from evlog.testing import capture_events

    async def handle(user: str, ready: asyncio.Event, go: asyncio.Event) -> None:
        async with evlog.context(user=User(id=user)):
            ready.set()
            await go.wait()  # both tasks are inside their blocks at the same time
            evlog.log_event("handled", data={"for": user})

    async def main() -> None:
        go = asyncio.Event()
        readies = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(handle(u, r, go)) for u, r in zip(["a", "b"], readies, strict=True)]
        for ready in readies:
            await ready.wait()
        go.set()
        await asyncio.gather(*tasks)

    with capture_events() as events:
        asyncio.run(main())
    assert sorted((e.data["for"], e.user.id) for e in events if e.user) == [("a", "a"), ("b", "b")]


def test_threads_have_their_own_context_and_evlogs_threads_see_the_one_captured_at_the_call() -> None:
    memory = MemoryExporter()
    seen_by_processor: list[str | None] = []

    def processor(event: evlog.Event) -> evlog.Event:
        seen_by_processor.append(evlog.current_context().session_id)  # evlog's thread: nothing bound there
        return event

    evlog.configure(exporters=[memory], flush_interval=0.05, before_send=[processor])
    evlog.bind(session_id="main")
    other = threading.Thread(target=lambda: evlog.log_event("from another thread"))
    other.start()
    other.join()
    evlog.log_event("from main")
    assert evlog.flush(5)
    by_name = {e.name: e.session_id for e in memory.events}
    assert by_name == {"from another thread": None, "from main": "main"}
    assert seen_by_processor == [None, None]


def test_exceptions_and_log_records_carry_the_context(caplog: pytest.LogCaptureFixture) -> None:
    from evlog.logging import EvlogHandler
    from evlog.testing import capture_events

    log = logging.getLogger("test.context")
    handler = EvlogHandler()
    log.addHandler(handler)
    try:
        with capture_events() as events, evlog.context(user=User(id="u-7")):
            try:
                raise ValueError("boom")
            except ValueError:
                evlog.capture_exception()
                log.exception("request failed")
    finally:
        log.removeHandler(handler)
    assert [(e.name, e.user) for e in events] == [("exception", User(id="u-7")), ("log.test.context", User(id="u-7"))]


def test_set_user_binds_a_user() -> None:
    from evlog.testing import capture_events

    evlog.set_user(id="u-1", email="a@example.com")
    with capture_events() as events:
        evlog.log_event("x")
    assert events[0].user == User(id="u-1", email="a@example.com")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user": "u-42"}, "user must be an evlog.User"),
        ({"labels": "web"}, "labels must be a list of strings"),
        ({"data": {1: "x"}}, "data keys must be strings"),
        ({"colour": "red"}, "cannot bind 'colour'"),
    ],
)
def test_bad_bindings_are_refused_where_they_are_made(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        evlog.bind(**fields)
    with pytest.raises(InvalidEventError, match=message):
        evlog.context(**fields)


def test_an_integer_user_id_is_kept_and_sent_in_each_backends_form() -> None:
    from evlog.exporters.statsig import StatsigExporter
    from evlog.testing import capture_events

    with capture_events() as events:
        evlog.log_event("x", user=User(id=5))
        evlog.log_event("y", user=User(id=2**60))
    assert events[0].user is not None and events[0].user.id == 5  # still an integer for processors
    assert events[1].user is not None and events[1].user.id == str(2**60)  # past 2**53: the exact text
    exporter = StatsigExporter(api_key="secret-k", endpoint="http://127.0.0.1:9/v1/log_event")
    assert exporter._user(events[0].user)["userID"] == "5"  # type: ignore[index]


def test_a_bool_or_float_user_id_is_refused() -> None:
    with pytest.raises(InvalidEventError, match=r"User\.id must be a string, an integer or None"):
        User(id=True)
    with pytest.raises(InvalidEventError, match=r"User\.id must be a string, an integer or None"):
        User(id=1.5)  # type: ignore[arg-type]
