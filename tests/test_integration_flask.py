"""The Flask integration: the request's context from its start to its teardown, the exceptions Flask catches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import flask
import pytest

import evlog
from evlog import User
from evlog.exporters.memory import MemoryExporter
from evlog.integrations.flask import init_app
from evlog.logging import EvlogHandler
from evlog.testing import capture_events
from support.web import WsgiServer, get_concurrently


def _user(request: flask.Request) -> User | None:
    name = request.headers.get("X-User")
    return User(id=name) if name else None


def make_app(barrier: threading.Barrier | None = None, **options: object) -> flask.Flask:
    app = flask.Flask("shop")
    init_app(app, user=_user, **options)  # type: ignore[arg-type]

    @app.get("/items/<item>")
    def item(item: str) -> str:
        evlog.log_event("viewed", data={"item": item})
        if barrier is not None:
            barrier.wait()  # every request is in flight, each in its own context, before any goes on
        app.logger.warning("looked at %s", item)
        if item == "broken":
            raise RuntimeError("out of stock")
        return "ok"

    return app


@pytest.fixture
def bridge() -> Iterator[None]:
    logger = logging.getLogger("shop")  # Flask("shop").logger
    handler = EvlogHandler(level=logging.WARNING)
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


def test_a_request_is_logged_with_its_route_template_id_and_user() -> None:
    client = make_app().test_client()
    with capture_events() as events:
        assert client.get("/items/42", headers={"X-User": "alice", "X-Request-ID": "r-1"}).status_code == 200
    viewed = events[0]
    assert viewed.user == User(id="alice")
    assert viewed.data == {
        "request_id": "r-1",
        "method": "GET",
        "path": "/items/42",
        "route": "/items/<item>",
        "item": "42",
    }
    assert evlog.current_context() == evlog.current_context().__class__()  # nothing left bound after the request


@pytest.mark.usefixtures("bridge")
def test_the_exception_flask_catches_is_recorded_once_with_the_request_context() -> None:
    client = make_app(request_events=True).test_client()
    with capture_events() as events:
        assert client.get("/items/broken", headers={"X-User": "bob"}).status_code == 500
    names = [e.name for e in events]
    assert names == ["viewed", "log.shop", "exception", "log.shop", "http.request"]
    exception, flask_log = events[2], events[3]
    assert exception.exception is not None and exception.exception.exception_type == "RuntimeError"
    assert exception.data["mechanism"] == "flask" and exception.data["route"] == "/items/<item>"
    assert flask_log.message.startswith("Exception on /items/broken")  # Flask's own log_exception record
    assert all(e.user == User(id="bob") for e in events)
    assert (events[4].data["status"], events[4].level) == (500, "error")


def test_request_events_and_unmatched_routes() -> None:
    client = make_app(request_events=True).test_client()
    with capture_events() as events:
        assert client.get("/nowhere").status_code == 404
    (request,) = events
    assert request.data["status"] == 404 and "route" not in request.data and request.data["path"] == "/nowhere"


@pytest.mark.usefixtures("bridge")
def test_concurrent_requests_for_different_users_each_carry_their_own_user() -> None:
    """The issue's test: two requests in flight at once on a real server; every event has its request's user,
    including the failing request's exception event and the logging bridge's records."""
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05)
    with WsgiServer(make_app(threading.Barrier(2, timeout=10))) as server:
        results = get_concurrently(
            [(server.url + "/items/7", {"X-User": "ann"}), (server.url + "/items/broken", {"X-User": "ben"})]
        )
    assert [status for status, _ in results] == [200, 500]
    assert evlog.flush(5)
    seen = sorted((e.data["path"], e.name, e.user.id if e.user else None) for e in memory.events)
    assert seen == [
        ("/items/7", "log.shop", "ann"),
        ("/items/7", "viewed", "ann"),
        ("/items/broken", "exception", "ben"),
        ("/items/broken", "log.shop", "ben"),  # "looked at broken"
        ("/items/broken", "log.shop", "ben"),  # Flask's "Exception on /items/broken [GET]"
        ("/items/broken", "viewed", "ben"),
    ]


def test_init_app_twice_is_refused() -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="already called"):
        init_app(app)
