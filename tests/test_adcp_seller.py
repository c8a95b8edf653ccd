"""AdCP exporter against a seller built with the official ``adcp`` SDK's server framework (support/adcp_seller.py).

The seller runs in a subprocess on loopback, started once for the module: importing the SDK alone takes
15-20 s on a busy machine, which is most of this file's run time.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

import evlog
from evlog._event import User
from evlog.exporters._base import Batch, ExportStatus
from evlog.exporters.adcp import AdcpExporter
from support.events import make_event

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("adcp") is None, reason="the adcp SDK (dev dependency) is missing"),
]

TOKEN = "seller-token-4711"
SELLER = Path(__file__).parent / "support" / "adcp_seller.py"
SCHEMAS = Path(__file__).parent / "data" / "adcp-schemas" / "3.2.4" / "bundled" / "media-buy"


class Seller:
    def __init__(self, port: int, process: subprocess.Popen[str]) -> None:
        self.port = port
        self.process = process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def state(self) -> dict[str, Any]:
        reply = requests.get(f"http://127.0.0.1:{self.port}/_test/state", timeout=5)
        reply.raise_for_status()
        return dict(reply.json())

    def requests_for(self, event_id: str) -> list[dict[str, Any]]:
        return [r for r in self.state()["requests"] if any(e["event_id"] == event_id for e in r["events"])]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def seller() -> Iterator[Seller]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(SELLER), str(port), TOKEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()
    log: list[str] = []

    def drain() -> None:  # also keeps the pipe from filling up with access-log lines
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if "Application startup complete" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, name="adcp-seller-log", daemon=True)
    reader.start()
    try:
        assert ready.wait(90), "the adcp seller did not start within 90 s"
        assert process.poll() is None, "the adcp seller exited:\n" + "".join(log[-30:])
        yield Seller(port, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        reader.join(5)
        if process.stderr is not None:
            process.stderr.close()


PURCHASE = {"click_id": "abc", "click_id_type": "gclid", "currency": "USD"}


def make(seller: Seller, **kwargs: Any) -> AdcpExporter:
    return AdcpExporter(**{"agent_url": seller.url, "token": TOKEN, "event_source_id": "website_pixel", **kwargs})


def test_events_are_accepted(seller: Seller) -> None:
    exporter = make(seller)
    before = seller.state()["events_counted"]
    user = User(email="jane@example.com", ip="203.0.113.9", user_agent="ua", custom_ids={"uid2": "U"})
    result = exporter.export(
        Batch(
            (
                make_event(event_id="ok-1", value=9.5, user=user, data=PURCHASE),
                make_event(event_id="ok-2", name="my_signup", data=PURCHASE),
            )
        )
    )
    exporter.shutdown(2)
    assert result.ok, result.message
    assert result.details["match_quality"] == 0.5
    assert seller.state()["events_counted"] == before + 2


def test_request_validates_against_the_official_schema(seller: Seller) -> None:
    exporter = make(seller, test_event_code="TEST_1", action_source="website")
    data = {"progress_seconds": 30, "content_ids": ["ep-1"], "surface": {"category": "app", "property_id": "p"}}
    events = (
        make_event(event_id="schema-1", user=User(phone="+12065551234"), data=PURCHASE),
        make_event(event_id="schema-2", name="watch_milestone", data=data),
    )
    assert exporter.export(Batch(events)).ok
    exporter.shutdown(2)
    (sent,) = seller.requests_for("schema-1")
    schema = json.loads((SCHEMAS / "log-event-request.json").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(sent)] == []
    assert sent["test_event_code"] == "TEST_1"


def test_retry_with_the_same_key_is_a_replay_not_a_double_count(seller: Seller) -> None:
    exporter = make(seller)
    batch = Batch((make_event(event_id="replay-1", data=PURCHASE), make_event(event_id="replay-2", data=PURCHASE)))
    assert exporter.export(batch).ok
    counted = seller.state()["events_counted"]
    assert exporter.export(batch.retry()).ok
    exporter.shutdown(2)
    assert seller.state()["events_counted"] == counted
    assert exporter.stats()["replayed"] == 1
    assert exporter.stats()["events_processed"] == 2


def test_partial_failures_are_rejected_per_event(seller: Seller) -> None:
    old = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    exporter = make(seller)
    result = exporter.export(
        Batch(
            (
                make_event(event_id="partial-ok", data=PURCHASE),
                make_event(event_id="partial-old", timestamp=old, data=PURCHASE),
            )
        )
    )
    exporter.shutdown(2)
    assert result.status is ExportStatus.PARTIAL
    assert result.rejected == {
        "partial-old": "refused by the AdCP seller: VALIDATION_ERROR: event_time outside attribution window"
    }
    assert result.details["warnings"] == ["some events were outside the attribution window"]


def test_unknown_event_source_is_a_failure_with_the_sellers_message(seller: Seller) -> None:
    exporter = make(seller, event_source_id="not_configured")
    result = exporter.export(Batch((make_event(event_id="ref-1", data=PURCHASE),)))
    exporter.shutdown(2)
    assert result.status is ExportStatus.FAILURE
    assert "REFERENCE_NOT_FOUND" in result.message
    assert "event_source_id" in result.message


def test_bad_token_is_a_permanent_failure(seller: Seller) -> None:
    exporter = make(seller, token="wrong-token-0000")
    result = exporter.export(Batch((make_event(event_id="auth-1", data=PURCHASE),)))
    exporter.shutdown(2)
    assert result.status is ExportStatus.FAILURE
    assert "HTTP 401" in result.message
    assert "wrong-token-0000" not in result.message


def test_rate_limited_is_retried_after_retry_after_with_the_same_key(seller: Seller) -> None:
    options = {"agent_url": seller.url, "token": TOKEN, "event_source_id": "rate_limited"}
    evlog.configure(exporters={"adcp": options}, flush_interval=0.05, retry_initial_backoff=0.01)
    evlog.log_event("lead", event_id="rl-1", data={"click_id": "abc"})
    assert evlog.flush(15)
    stats = evlog.stats()["adcp"]
    assert (stats.sent, stats.retried, stats.dropped_total) == (1, 1, 0)
    sent = seller.requests_for("rl-1")
    assert len(sent) == 2
    assert sent[0]["idempotency_key"] == sent[1]["idempotency_key"]


def test_pipeline_end_to_end_with_stats(seller: Seller) -> None:
    options = {"agent_url": seller.url, "token": TOKEN, "event_source_id": "website_pixel"}
    evlog.configure(exporters={"adcp": options}, flush_interval=0.05, retry_initial_backoff=0.01)
    evlog.log_event("purchase", event_id="pipe-1", value=20, data={"currency": "EUR", "click_id": "c"})
    evlog.log_event("lead", event_id="pipe-2", user=User(ip="203.0.113.1"))  # breaks the user_match rule
    assert evlog.flush(10) is False  # an event was refused: flush says not all was delivered
    stats = evlog.stats()["adcp"]
    assert stats.sent == 1
    assert stats.dropped == {"rejected": 1}
    assert stats.details["match_quality"] == 0.5
    assert len(seller.requests_for("pipe-1")) == 1
