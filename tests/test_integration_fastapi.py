"""The ASGI middleware and the FastAPI integration: context per request (route and user once routed), exceptions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import evlog
from evlog import User
from evlog.exporters.memory import MemoryExporter
from evlog.integrations.asgi import EvlogMiddleware
from evlog.integrations.fastapi import init_app
from evlog.logging import EvlogHandler
from evlog.testing import capture_events

log = logging.getLogger("shop")


def _user(request: Request) -> User | None:
    name = request.headers.get("X-User")
    return User(id=name) if name else None


class Rendezvous:
    """Holds each request until ``parties`` requests are inside their endpoint, all in flight at once."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_in: asyncio.Event | None = None

    async def wait(self) -> None:
        if self.all_in is None:
            self.all_in = asyncio.Event()
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 10)


def make_app(rendezvous: Rendezvous | None = None, **options: object) -> FastAPI:
    app = FastAPI()
    init_app(app, user=_user, **options)  # type: ignore[arg-type]

    @app.get("/items/{item}")
    async def item(item: str) -> str:
        evlog.log_event("viewed", data={"item": item})
        if rendezvous is not None:
            await rendezvous.wait()
        log.warning("looked at %s", item)
        if item == "broken":
            raise RuntimeError("out of stock")
        return "ok"

    @app.get("/sync/{item}")
    def sync_item(item: str) -> str:  # runs on a worker thread
        evlog.log_event("viewed", data={"item": item})
        return "ok"

    return app


@pytest.fixture
def bridge() -> Iterator[None]:
    handler = EvlogHandler(level=logging.WARNING)
    log.addHandler(handler)
    yield
    log.removeHandler(handler)


@pytest.mark.parametrize("path", ["/items/42", "/sync/42"])
def test_a_request_is_logged_with_its_route_template_id_and_user(path: str) -> None:
    with capture_events() as events, TestClient(make_app()) as client:
        assert client.get(path, headers={"X-User": "alice", "X-Request-ID": "r-1"}).status_code == 200
    (viewed,) = events
    assert viewed.user == User(id="alice")
    route = path.replace("42", "{item}")
    assert viewed.data == {"request_id": "r-1", "method": "GET", "path": path, "route": route, "item": "42"}


def test_an_unhandled_exception_is_recorded_once_with_route_and_user() -> None:
    with capture_events() as events, TestClient(make_app(request_events=True), raise_server_exceptions=False) as client:
        assert client.get("/items/broken", headers={"X-User": "bob"}).status_code == 500
    _viewed, exception, request = events
    assert exception.exception is not None and exception.exception.exception_type == "RuntimeError"
    assert (exception.user, exception.data["route"], exception.data["mechanism"]) == (
        User(id="bob"),
        "/items/{item}",
        "asgi",
    )
    assert (request.name, request.data["status"], request.user) == ("http.request", 500, User(id="bob"))


def test_request_events_of_an_unmatched_path() -> None:
    with capture_events() as events, TestClient(make_app(request_events=True)) as client:
        assert client.get("/nowhere").status_code == 404
    (request,) = events
    assert request.data["status"] == 404 and request.data["path"] == "/nowhere" and "route" not in request.data
    assert isinstance(request.data["duration_ms"], float)


@pytest.mark.usefixtures("bridge")
def test_concurrent_requests_for_different_users_each_carry_their_own_user() -> None:
    """The issue's test on asyncio: two requests in flight at once as two tasks of one loop; every event has its
    request's user, including the failing request's exception event and the logging bridge's records."""
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05)
    app = make_app(Rendezvous(2))

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            responses = await asyncio.gather(
                client.get("/items/7", headers={"X-User": "ann"}),
                client.get("/items/broken", headers={"X-User": "ben"}),
            )
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200, 500]
    assert evlog.flush(5)
    seen = sorted((e.data["path"], e.name, e.user.id if e.user else None) for e in memory.events)
    assert seen == [
        ("/items/7", "log.shop", "ann"),
        ("/items/7", "viewed", "ann"),
        ("/items/broken", "exception", "ben"),
        ("/items/broken", "log.shop", "ben"),
        ("/items/broken", "viewed", "ben"),
    ]


def test_the_asgi_middleware_on_a_plain_starlette_app() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        evlog.log_event("hello")
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/hello/{name}", hello)])
    app.add_middleware(
        EvlogMiddleware,  # type: ignore[arg-type]
        user=lambda scope: User(id="u-1"),
        request_events=True,
    )
    with capture_events() as events, TestClient(app) as client:
        assert client.get("/hello/x", headers={"X-Request-ID": "r-5"}).status_code == 200
    hello_event, request = events
    assert (hello_event.user, hello_event.data["request_id"], hello_event.data["path"]) == (
        User(id="u-1"),
        "r-5",
        "/hello/x",
    )
    assert (request.data["status"], request.data["route"]) == (200, "/hello/{name}")
