"""The WSGI middleware, behind a real server on loopback: context per request, exceptions, http.request events."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import evlog
from evlog import User
from evlog._context import current
from evlog.integrations.wsgi import EvlogMiddleware
from evlog.testing import capture_events
from support.web import WsgiServer, get, get_concurrently


def _user(environ: dict[str, Any]) -> User | None:
    name = environ.get("HTTP_X_USER")
    return User(id=name) if name else None


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Logs one event; ``/fail`` raises instead of answering."""
    evlog.log_event("handled", data={"query": environ.get("QUERY_STRING", "")})
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("boom")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def events() -> Iterator[list[evlog.Event]]:
    with capture_events() as captured:
        yield captured


def test_each_request_is_logged_with_its_id_method_path_and_user(events: list[evlog.Event]) -> None:
    with WsgiServer(EvlogMiddleware(app, user=_user)) as server:
        assert get(server.url + "/items?x=1", {"X-Request-ID": "req-1", "X-User": "alice"}) == (200, b"ok")
    (event,) = events
    assert event.user == User(id="alice")
    assert event.data == {"request_id": "req-1", "method": "GET", "path": "/items", "query": "x=1"}


def test_a_request_without_an_id_gets_a_new_uuid(events: list[evlog.Event]) -> None:
    with WsgiServer(EvlogMiddleware(app, request_id_header="X-Trace")) as server:
        get(server.url + "/")
        get(server.url + "/", {"X-Trace": "t-9"})
    first, second = events
    assert uuid.UUID(first.data["request_id"]).version == 4
    assert second.data["request_id"] == "t-9"
    assert first.user is None


def test_an_unhandled_exception_is_recorded_with_the_request_context_and_raised_again(
    events: list[evlog.Event],
) -> None:
    with WsgiServer(EvlogMiddleware(app, user=_user, request_events=True)) as server:
        status, _ = get(server.url + "/fail", {"X-User": "bob", "X-Request-ID": "r-2"})
    assert status == 500  # the server saw the exception: the middleware raised it again
    _handled, exception, request = events
    assert exception.name == "exception" and exception.exception is not None
    assert exception.exception.exception_type == "RuntimeError"
    assert (exception.user, exception.data["request_id"], exception.data["mechanism"]) == (
        User(id="bob"),
        "r-2",
        "wsgi",
    )
    assert (request.name, request.level, request.data["status"]) == ("http.request", "error", 500)


def test_request_events_carry_status_and_duration(events: list[evlog.Event]) -> None:
    with WsgiServer(EvlogMiddleware(app, request_events=True)) as server:
        get(server.url + "/ok", {"X-Request-ID": "r-3"})
    _handled, request = events
    assert request.name == "http.request" and request.category == "http"
    assert request.data["status"] == 200 and request.data["request_id"] == "r-3"
    assert isinstance(request.data["duration_ms"], float) and request.data["duration_ms"] >= 0


def test_a_streamed_body_runs_in_the_request_context_and_its_failure_is_recorded(events: list[evlog.Event]) -> None:
    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        evlog.log_event("chunk")
        yield b"first"
        raise ValueError("stream broke")

    # The server cuts the connection in the middle of the body.
    with WsgiServer(EvlogMiddleware(streaming, user=_user)) as server, contextlib.suppress(OSError):
        get(server.url + "/stream", {"X-User": "carol"})
    chunk, exception = events
    assert chunk.user == User(id="carol") and chunk.data["path"] == "/stream"
    assert exception.exception is not None and exception.exception.exception_type == "ValueError"
    assert exception.user == User(id="carol")


def test_concurrent_requests_each_carry_their_own_user(events: list[evlog.Event]) -> None:
    both_inside = threading.Barrier(2, timeout=10)

    def waiting(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        both_inside.wait()  # both requests are in flight, each with its context bound, before either logs
        return app(environ, start_response)

    with WsgiServer(EvlogMiddleware(waiting, user=_user)) as server:
        results = get_concurrently([(server.url + "/a", {"X-User": "ann"}), (server.url + "/b", {"X-User": "ben"})])
    assert [status for status, _ in results] == [200, 200]
    assert sorted((e.data["path"], e.user.id) for e in events if e.user) == [("/a", "ann"), ("/b", "ben")]


def test_nothing_bound_during_a_request_is_left_on_the_servers_thread() -> None:
    def binding(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        evlog.bind(session_id="s-from-the-app")
        start_response("204 No Content", [])
        return []

    body = EvlogMiddleware(binding, user=_user)({"PATH_INFO": "/", "HTTP_X_USER": "dan"}, lambda *a: None)
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert current() == evlog.current_context() == current().__class__()


def test_a_failing_user_callback_costs_the_user_not_the_request(events: list[evlog.Event]) -> None:
    def broken(environ: dict[str, Any]) -> User | None:
        raise KeyError("no session")

    with WsgiServer(EvlogMiddleware(app, user=broken)) as server:
        assert get(server.url + "/")[0] == 200
    assert events[0].user is None and events[0].data["path"] == "/"


def test_start_response_gets_exc_info_only_when_the_app_passes_it(events: list[evlog.Event]) -> None:
    calls: list[tuple[object, ...]] = []

    def two_arguments(status: str, headers: list[tuple[str, str]]) -> None:  # as some servers declare it
        calls.append((status, headers))

    body = EvlogMiddleware(app)({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, two_arguments)
    assert list(body) == [b"ok"]
    body.close()  # type: ignore[attr-defined]
    assert calls == [("200 OK", [("Content-Type", "text/plain")])]
