"""The Django integration: the middleware (context per request, route pattern, exceptions) and the app config."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import django
import pytest
from django.apps import apps
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

import evlog
from evlog import User
from evlog.exporters.memory import MemoryExporter
from evlog.logging import EvlogHandler
from evlog.testing import capture_events
from support.web import WsgiServer, get_concurrently


def header_user(request: HttpRequest) -> User | None:
    name = request.headers.get("X-User")
    return User(id=name) if name else None


#: Set by the concurrency test: each request waits there until both are in flight.
rendezvous: list[threading.Barrier] = []


def item(request: HttpRequest, item_id: int) -> HttpResponse:
    evlog.log_event("viewed", data={"item": item_id})
    for barrier in rendezvous:
        barrier.wait()
    if item_id == 0:
        raise RuntimeError("out of stock")
    return HttpResponse("ok")


urlpatterns = [path("items/<int:item_id>", item)]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["evlog.integrations.django"],
        MIDDLEWARE=["evlog.integrations.django.EvlogMiddleware"],
        EVLOG_USER=f"{__name__}.header_user",
        EVLOG_REQUEST_EVENTS=True,
        LOGGING_CONFIG=None,
    )
    django.setup()


@pytest.fixture
def bridge() -> Iterator[None]:
    logger = logging.getLogger("django.request")
    handler = EvlogHandler(level=logging.WARNING)
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


def test_a_request_is_logged_with_its_route_pattern_id_and_user() -> None:
    with capture_events() as events:
        response = Client().get("/items/42", headers={"X-User": "alice", "X-Request-ID": "r-1"})
    assert response.status_code == 200
    viewed, request = events
    assert viewed.user == User(id="alice")
    assert viewed.data == {
        "request_id": "r-1",
        "method": "GET",
        "path": "/items/42",
        "route": "/items/<int:item_id>",
        "item": 42,
    }
    assert (request.name, request.data["status"], request.data["route"]) == (
        "http.request",
        200,
        "/items/<int:item_id>",
    )
    assert evlog.current_context() == evlog.current_context().__class__()


@pytest.mark.usefixtures("bridge")
def test_the_exception_django_catches_is_recorded_with_the_request_context() -> None:
    with capture_events() as events:
        response = Client(raise_request_exception=False).get("/items/0", headers={"X-User": "bob"})
    assert response.status_code == 500
    assert [e.name for e in events] == ["viewed", "exception", "log.django.request", "http.request"]
    exception = events[1]
    assert exception.exception is not None and exception.exception.exception_type == "RuntimeError"
    assert (exception.data["mechanism"], exception.data["route"]) == ("django", "/items/<int:item_id>")
    assert all(e.user == User(id="bob") for e in events)
    assert events[3].data["status"] == 500


def test_the_app_config_configures_evlog_from_settings(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with override_settings(EVLOG={"exporters": {"jsonl": {"path": str(out)}}}):
        apps.get_app_config("evlog").ready()
    Client().get("/items/7", headers={"X-User": "carol"})
    assert evlog.flush(5)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["viewed", "http.request"]
    assert type(apps.get_app_config("evlog")).__name__ == "EvlogConfig"


def test_the_app_config_refuses_a_setting_that_is_not_a_dict() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(EVLOG=["console"]), pytest.raises(ImproperlyConfigured, match="must be a dict"):
        apps.get_app_config("evlog").ready()


@pytest.mark.usefixtures("bridge")
def test_concurrent_requests_for_different_users_each_carry_their_own_user() -> None:
    """Two requests in flight at once on a real server: every event has its request's user, the failing
    request's exception event and Django's own "Internal Server Error" record (through the bridge) included."""
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05)
    rendezvous.append(threading.Barrier(2, timeout=10))
    try:
        with WsgiServer(get_wsgi_application()) as server:
            results = get_concurrently(
                [(server.url + "/items/7", {"X-User": "ann"}), (server.url + "/items/0", {"X-User": "ben"})]
            )
    finally:
        rendezvous.clear()
    assert [status for status, _ in results] == [200, 500]
    assert evlog.flush(5)
    seen = sorted((e.data["path"], e.name, e.user.id if e.user else None) for e in memory.events)
    assert seen == [
        ("/items/0", "exception", "ben"),
        ("/items/0", "http.request", "ben"),
        ("/items/0", "log.django.request", "ben"),
        ("/items/0", "viewed", "ben"),
        ("/items/7", "http.request", "ann"),
        ("/items/7", "viewed", "ann"),
    ]
