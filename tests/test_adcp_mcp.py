"""AdCP exporter over MCP Streamable HTTP, against a scripted loopback MCP server (see support/mcp_fake.py).

Covers what the SDK-built seller cannot show: SSE answers, session expiry, slow and reset connections, and the
error shapes AdCP allows (JSON-RPC errors, isError, errors[] with isError false, text-only results).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import evlog
from evlog import ConfigError
from evlog._event import User
from evlog.exporters._base import Batch, ExportStatus
from evlog.exporters.adcp import AdcpExporter
from support.events import make_event
from support.loopback import Fault, Reply
from support.mcp_fake import McpFake

TOKEN = "secret-token-123"


CLICK = {"click_id": "abc", "click_id_type": "gclid"}


def tool_payload(payload: dict[str, Any], *, is_error: bool = False, structured: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": json.dumps(payload)}], "isError": is_error}
    if structured:
        result["structuredContent"] = payload
    return result


@pytest.fixture
def fake() -> Iterator[McpFake]:
    with McpFake() as server:
        yield server


def make(fake: McpFake, **kwargs: Any) -> AdcpExporter:
    options = {"agent_url": fake.url, "token": TOKEN, "event_source_id": "web", **kwargs}
    return AdcpExporter(**options)


def test_handshake_then_tools_call_with_session_headers(fake: McpFake) -> None:
    exporter = make(fake, test_event_code="TEST_1")
    assert exporter.export(Batch((make_event("lead", data=CLICK),))).ok
    init, note, call = fake.server.requests
    assert (init.json()["method"], note.json()["method"]) == ("initialize", "notifications/initialized")
    for request in (init, note, call):
        assert request.header("Accept") == "application/json, text/event-stream"
        assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert call.header("Mcp-Session-Id") == "session-1"
    assert call.header("MCP-Protocol-Version") == "2025-06-18"
    params = call.json()["params"]
    assert params["name"] == "log_event"
    assert params["arguments"]["event_source_id"] == "web"
    assert params["arguments"]["test_event_code"] == "TEST_1"
    assert params["arguments"]["adcp_version"] == "3.2"
    exporter.shutdown(1)


def test_sse_answers_are_parsed() -> None:
    with McpFake(sse=True) as fake:
        exporter = make(fake)
        result = exporter.export(Batch((make_event("lead", data=CLICK),)))
        exporter.shutdown(1)
    assert result.ok
    assert result.details["match_quality"] == 0.8


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_an_sse_stream_the_server_keeps_open_is_read_only_up_to_the_answer(chunked: bool) -> None:
    import time

    with McpFake(sse=True, hold_open=True, chunked=chunked) as fake:
        exporter = make(fake, timeout=10.0)
        started = time.monotonic()
        result = exporter.export(Batch((make_event("lead", data=CLICK),)))
        elapsed = time.monotonic() - started
        fake.server.release()
        exporter.shutdown(1)
    assert result.ok
    assert elapsed < 5.0  # not the 10 s read timeout per request


def test_expired_session_starts_a_new_one(fake: McpFake) -> None:
    exporter = make(fake)
    assert exporter.export(Batch((make_event("lead", event_id="a", data=CLICK),))).ok
    fake.expire_sessions()
    assert exporter.export(Batch((make_event("lead", event_id="b", data=CLICK),))).ok
    calls = fake.calls()
    assert [c.header("Mcp-Session-Id") for c in calls] == ["session-1", "session-1", "session-2"]
    assert exporter.stats()["sessions_started"] == 2
    exporter.shutdown(1)


def test_session_is_deleted_at_shutdown(fake: McpFake) -> None:
    exporter = make(fake)
    exporter.export(Batch((make_event("lead", data=CLICK),)))
    exporter.shutdown(1)
    assert fake.deleted == ["session-1"]
    assert fake.server.requests[-1].method == "DELETE"


def test_reset_connection_is_retried_with_the_same_idempotency_key(fake: McpFake) -> None:
    exporter = make(fake)
    assert exporter.export(Batch((make_event("lead", event_id="warm", data=CLICK),))).ok
    batch = Batch((make_event("lead", event_id="a", data=CLICK), make_event("lead", event_id="b", data=CLICK)))
    fake.server.script(Fault.RESET)
    first = exporter.export(batch)
    assert first.status is ExportStatus.RETRY
    assert exporter.export(batch.retry()).ok
    keys = [c.json()["params"]["arguments"]["idempotency_key"] for c in fake.calls()[1:]]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    exporter.shutdown(1)


def test_a_new_batch_gets_a_new_key(fake: McpFake) -> None:
    exporter = make(fake)
    exporter.export(Batch((make_event("lead", event_id="a", data=CLICK),)))
    exporter.export(Batch((make_event("lead", event_id="a", data=CLICK),)))
    keys = {c.json()["params"]["arguments"]["idempotency_key"] for c in fake.calls()}
    assert len(keys) == 2
    exporter.shutdown(1)


def test_slow_server_times_out_as_a_retry(fake: McpFake) -> None:
    exporter = make(fake, timeout=0.2)
    assert exporter.export(Batch((make_event("lead", event_id="warm", data=CLICK),))).ok
    fake.server.script(Reply(200, delay=2.0))
    result = exporter.export(Batch((make_event("lead", data=CLICK),)))
    assert result.status is ExportStatus.RETRY
    assert "Timeout" in result.message
    exporter.shutdown(0.5)


def test_errors_array_with_is_error_false_is_a_failure_not_a_success() -> None:
    payload = {"errors": [{"code": "REFERENCE_NOT_FOUND", "message": "no such source", "recovery": "terminal"}]}
    with McpFake(lambda _args: tool_payload({**payload, "status": "completed"})) as fake:
        result = make(fake).export(Batch((make_event("lead", data=CLICK),)))
    assert result.status is ExportStatus.FAILURE
    assert "REFERENCE_NOT_FOUND: no such source" in result.message


def test_transient_error_is_retried_after_its_retry_after() -> None:
    payload = {"errors": [{"code": "RATE_LIMITED", "message": "slow down", "retry_after": 2.4}]}
    with McpFake(lambda _args: tool_payload(payload)) as fake:
        result = make(fake).export(Batch((make_event("lead", data=CLICK),)))
    assert result.status is ExportStatus.RETRY
    assert result.retry_after == 3.0  # ceil, clamped to [1, 3600]


def test_is_error_with_adcp_error_envelope() -> None:
    error = {"code": "IDEMPOTENCY_CONFLICT", "message": "key reused", "recovery": "correctable"}
    with McpFake(lambda _args: tool_payload({"adcp_error": error}, is_error=True)) as fake:
        result = make(fake).export(Batch((make_event("lead", data=CLICK),)))
    assert result.status is ExportStatus.FAILURE
    assert "IDEMPOTENCY_CONFLICT" in result.message


def test_unknown_code_without_recovery_is_not_retried() -> None:
    with McpFake(lambda _args: tool_payload({"errors": [{"code": "SOMETHING_NEW", "message": "?"}]})) as fake:
        result = make(fake).export(Batch((make_event("lead", data=CLICK),)))
    assert result.status is ExportStatus.FAILURE


def test_json_rpc_rate_limit_error_is_retried(fake: McpFake) -> None:
    exporter = make(fake)
    exporter.export(Batch((make_event("lead", event_id="warm", data=CLICK),)))
    error = {
        "code": -32029,
        "message": "rate limited",
        "data": {"adcp_error": {"code": "RATE_LIMITED", "retry_after": 5}},
    }
    fake.server.script(Reply(200, body={"jsonrpc": "2.0", "id": 3, "error": error}))
    result = exporter.export(Batch((make_event("lead", data=CLICK),)))
    assert result.status is ExportStatus.RETRY
    assert result.retry_after == 5.0
    exporter.shutdown(1)


def test_text_content_is_read_when_there_is_no_structured_content() -> None:
    payload = {"events_received": 1, "events_processed": 1, "match_quality": 0.3, "warnings": ["low match"]}
    with McpFake(lambda _args: tool_payload(payload, structured=False)) as fake:
        exporter = make(fake)
        result = exporter.export(Batch((make_event("lead", data=CLICK),)))
    assert result.ok
    assert result.details == {"match_quality": 0.3, "warnings": ["low match"]}
    assert exporter.stats()["warnings"] == ["low match"]


def test_partial_failures_and_local_rejections_are_reported_per_event() -> None:
    failure = {"event_id": "b", "code": "VALIDATION_ERROR", "message": "outside attribution window"}
    payload = {"events_received": 2, "events_processed": 1, "partial_failures": [failure], "status": "completed"}
    with McpFake(lambda _args: tool_payload(payload)) as fake:
        bad = make_event("lead", event_id="c", user=User(ip="203.0.113.7"))
        result = make(fake).export(
            Batch((make_event("lead", event_id="a", data=CLICK), make_event("lead", event_id="b", data=CLICK), bad))
        )
        sent = [e["event_id"] for e in fake.calls()[0].json()["params"]["arguments"]["events"]]
    assert sent == ["a", "b"]
    assert result.status is ExportStatus.PARTIAL
    assert result.rejected["b"] == "refused by the AdCP seller: VALIDATION_ERROR: outside attribution window"
    assert "user_match rule" in result.rejected["c"]
    assert "a" not in result.rejected


def test_events_past_the_batch_limit_are_handed_back_for_another_request(fake: McpFake) -> None:
    result = make(fake, max_batch_size=2).export(
        Batch(
            (
                make_event("lead", event_id="a", data=CLICK),
                make_event("lead", event_id="b", data=CLICK),
                make_event("lead", event_id="c", data=CLICK),
            )
        )
    )
    assert result.status is ExportStatus.PARTIAL
    assert result.retry_ids == frozenset({"c"})
    assert len(fake.calls()[0].json()["params"]["arguments"]["events"]) == 2


def test_other_auth_header_without_scheme(fake: McpFake) -> None:
    exporter = make(fake, auth_header="x-adcp-auth", auth_scheme="")
    exporter.export(Batch((make_event("lead", data=CLICK),)))
    call = fake.calls()[0]
    assert call.header("x-adcp-auth") == TOKEN
    assert call.header("Authorization") is None
    exporter.shutdown(1)


def test_token_never_in_reprs_or_messages(fake: McpFake) -> None:
    exporter = make(fake)
    fake.server.script(Reply(500, body={"message": f"bad token {TOKEN}"}))
    result = exporter.export(Batch((make_event("lead", data=CLICK),)))
    assert TOKEN not in result.message
    assert TOKEN not in repr(exporter)
    assert TOKEN not in repr(exporter.options)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="plain http"):
        AdcpExporter(agent_url="http://seller.example/mcp", event_source_id="web")
    with pytest.raises(ConfigError, match="max_batch_size"):
        AdcpExporter(agent_url="https://seller.example/mcp", event_source_id="web", max_batch_size=10_001)
    with pytest.raises(ConfigError, match="action_source"):
        AdcpExporter(agent_url="https://seller.example/mcp", event_source_id="web", action_source="tv")


def test_pipeline_from_environment(fake: McpFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_ADCP_AGENT_URL", fake.url)
    monkeypatch.setenv("EVLOG_ADCP_TOKEN", TOKEN)
    monkeypatch.setenv("EVLOG_ADCP_EVENT_SOURCE_ID", "env_source")
    evlog.configure(exporters=["adcp"], flush_interval=0.05)
    evlog.log_event("purchase", value=5, data={"currency": "USD", "click_id": "x"})
    assert evlog.flush(5)
    stats = evlog.stats()["adcp"]
    assert stats.sent == 1
    assert stats.details["match_quality"] == 0.8
    assert fake.calls()[0].json()["params"]["arguments"]["event_source_id"] == "env_source"
    evlog.shutdown(2)
    assert fake.deleted == ["session-1"]


def test_pipeline_retries_a_reset_and_counts_once(fake: McpFake) -> None:
    evlog.configure(
        exporters={"adcp": {"agent_url": fake.url, "token": TOKEN, "event_source_id": "web"}},
        flush_interval=0.05,
        retry_initial_backoff=0.01,
    )
    fake.server.script(Fault.RESET)  # the handshake's first request
    evlog.log_event("lead", data={"click_id": "x"})
    assert evlog.flush(5)
    stats = evlog.stats()["adcp"]
    assert (stats.sent, stats.dropped_total) == (1, 0)
    assert stats.retried >= 1
