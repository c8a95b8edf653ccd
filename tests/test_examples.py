"""The framework examples in examples/ run as shipped: imported and driven with their framework's test client."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from evlog import User
from evlog.testing import capture_events

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def shop_logger() -> Iterator[None]:
    """The examples attach the logging bridge to the "shop" logger: detach it after the test."""
    logger = logging.getLogger("shop")
    before = list(logger.handlers)
    yield
    logger.handlers[:] = before


@pytest.mark.usefixtures("shop_logger")
def test_the_flask_example() -> None:
    client = _load("flask_app").app.test_client()
    with capture_events() as events:
        assert client.post("/carts/c-1/checkout", headers={"X-User-Id": "u-1"}).status_code == 200
        assert client.post("/carts/c-2/checkout", headers={"X-User-Id": "u-2"}).status_code == 500
    names = [(e.name, e.user) for e in events]
    assert names == [
        ("checkout_started", User(id="u-1")),
        ("checkout_completed", User(id="u-1")),
        ("http.request", User(id="u-1")),
        ("checkout_started", User(id="u-2")),
        ("exception", User(id="u-2")),
        ("log.shop", User(id="u-2")),
        ("http.request", User(id="u-2")),
    ]
    assert {e.data["route"] for e in events} == {"/carts/<cart_id>/checkout"}


@pytest.mark.usefixtures("shop_logger")
def test_the_fastapi_example() -> None:
    from fastapi.testclient import TestClient

    app = _load("fastapi_app").app
    with capture_events() as events, TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/carts/c-1/checkout", headers={"X-User-Id": "u-1"}).status_code == 200
        assert client.post("/carts/c-2/checkout", headers={"X-User-Id": "u-2"}).status_code == 500
    names = [(e.name, e.user) for e in events]
    assert names == [
        ("checkout_started", User(id="u-1")),
        ("checkout_completed", User(id="u-1")),
        ("http.request", User(id="u-1")),
        ("checkout_started", User(id="u-2")),
        ("log.shop", User(id="u-2")),
        ("exception", User(id="u-2")),
        ("http.request", User(id="u-2")),
    ]
    assert {e.data["route"] for e in events} == {"/carts/{cart_id}/checkout"}


def test_the_celery_example() -> None:
    charge = _load("celery_task").charge
    with capture_events() as events:
        done = charge.apply(args=["o-1", 25.0])
        failed = charge.apply(args=["o-2", 0.0])
    assert (done.successful(), failed.failed()) == (True, True)
    assert [(e.name, e.data["task_id"]) for e in events] == [
        ("charge_started", done.id),
        ("charge_completed", done.id),
        ("charge_started", failed.id),
        ("exception", failed.id),
    ]
    assert {e.data["task_name"] for e in events} == {"orders.charge"}
