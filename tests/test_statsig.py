"""The Statsig exporter, over real HTTP on loopback against a fake implementing ``POST /v1/log_event``."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import evlog
from evlog import Batch, ConfigError, Drop, ExportStatus, User
from evlog.exporters.statsig import MAX_METADATA_CHARS, StatsigExporter, StatsigOptions
from support.events import make_event
from support.loopback import Fault, RecordingServer, Reply
from support.statsig_fake import KEY, PATH, StatsigFake, events_of

NOW = dt.datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
NOW_MS = 1777636800123


@pytest.fixture
def fake() -> StatsigFake:
    return StatsigFake()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RecordingServer]:
    # One server per module: stopping one waits out serve_forever's 0.5 s poll, which adds up per test.
    with RecordingServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: RecordingServer, fake: StatsigFake) -> Iterator[RecordingServer]:
    shared_server.handler = fake
    yield shared_server
    shared_server.reset()  # forget this test's requests and unused scripted replies


def endpoint(server: RecordingServer) -> str:
    return server.url + PATH


def configure(server: RecordingServer, **options: Any) -> list[Drop]:
    """The real pipeline, fast: short flush interval and retry backoff. Returns the list drops land in."""
    drops: list[Drop] = []
    evlog.configure(
        exporters={"statsig": {"api_key": KEY, "endpoint": endpoint(server), **options}},
        flush_interval=0.05,
        retry_initial_backoff=0.01,
        retry_max_backoff=0.05,
        retry_deadline=5,
        on_drop=drops.append,
    )
    return drops


def exporter(server: RecordingServer, **options: Any) -> StatsigExporter:
    return StatsigExporter(api_key=KEY, endpoint=endpoint(server), **options)


# --- wire format -------------------------------------------------------------------------------------------


def test_body_is_gzipped_json_in_statsig_shape(server: RecordingServer) -> None:
    configure(server, environment_tier="staging")
    user = User(id="u-1", email="a@example.com", ip="10.0.0.1", user_agent="Mozilla/5.0", country="US",
                locale="en_US", app_version="1.2.3", custom={"plan": "pro", "seats": 5},
                custom_ids={"companyID": "c-9"})  # fmt: skip
    evlog.log_event("purchase", value=19.99, timestamp=NOW, user=user, data={"sku": "ABC"})
    assert evlog.flush(5)

    request = server.wait_for(1)[0]
    assert request.header("Content-Encoding") == "gzip"
    body = json.loads(gzip.decompress(request.raw_body))
    assert set(body) == {"events", "statsigMetadata"}
    [sent] = body["events"]
    assert sent["eventName"] == "purchase"
    assert sent["value"] == 19.99
    assert sent["time"] == NOW_MS
    assert sent["metadata"] == {"level": "info", "sku": "ABC"}
    assert sent["user"] == {
        "userID": "u-1", "email": "a@example.com", "ip": "10.0.0.1", "userAgent": "Mozilla/5.0", "country": "US",
        "locale": "en_US", "appVersion": "1.2.3", "custom": {"plan": "pro", "seats": 5},
        "customIDs": {"companyID": "c-9"}, "statsigEnvironment": {"tier": "staging"},
    }  # fmt: skip
    meta = body["statsigMetadata"]
    assert meta["sdkType"] == "evlog-python"
    assert meta["sdkVersion"] == evlog.__version__
    assert uuid.UUID(meta["sessionID"])


def test_headers(server: RecordingServer) -> None:
    ex = exporter(server)
    before_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    assert ex.export(Batch((make_event(), make_event()))).ok
    request = server.wait_for(1)[0]
    assert request.header("STATSIG-API-KEY") == KEY
    assert before_ms <= int(request.header("STATSIG-CLIENT-TIME") or 0) <= before_ms + 60_000
    assert request.header("STATSIG-EVENT-COUNT") == "2"
    assert request.header("STATSIG-SDK-TYPE") == "evlog-python"
    assert request.header("STATSIG-SDK-VERSION") == evlog.__version__
    assert request.header("STATSIG-RETRY-COUNT") == "0"
    assert request.header("STATSIG-SERVER-SESSION-ID") == request.json()["statsigMetadata"]["sessionID"]
    assert request.header("Content-Type") == "application/json"
    ex.shutdown(1)


def test_private_attributes_are_never_sent(server: RecordingServer) -> None:
    ex = exporter(server)
    user = User(id="u-1", private_attributes={"internal_id": "secret-user-42"})
    assert ex.export(Batch((make_event(user=user),))).ok
    request = server.wait_for(1)[0]
    assert request.json()["events"][0]["user"] == {"userID": "u-1"}
    assert b"secret-user-42" not in request.body
    assert b"internal_id" not in request.body
    ex.shutdown(1)


def test_event_fields_go_to_metadata_and_win_over_data_keys(server: RecordingServer) -> None:
    ex = exporter(server)
    data = {"level": "mine", "data_level": "taken", "n": 2, "ok": True, "none": None, "obj": {"x": [1]}}
    ev = make_event(level=evlog.Level.ERROR, category="billing", labels=("a", "b"), message="card declined", data=data)
    assert ex.export(Batch((ev,))).ok
    assert server.wait_for(1)[0].json()["events"][0]["metadata"] == {
        "level": "error", "category": "billing", "labels": '["a","b"]', "message": "card declined",
        "data_data_level": "taken", "data_level": "mine", "n": "2", "ok": "true", "none": "null", "obj": '{"x":[1]}',
    }  # fmt: skip
    ex.shutdown(1)


def test_stringify_metadata_off_sends_json_values(server: RecordingServer) -> None:
    ex = exporter(server, stringify_metadata=False)
    assert ex.export(Batch((make_event(labels=("a",), data={"n": 2, "obj": {"x": [1]}}),))).ok
    meta = server.wait_for(1)[0].json()["events"][0]["metadata"]
    assert meta == {"level": "info", "labels": ["a"], "n": 2, "obj": {"x": [1]}}
    ex.shutdown(1)


def test_compress_off_sends_plain_json(server: RecordingServer) -> None:
    ex = exporter(server, compress=False)
    assert ex.export(Batch((make_event(),))).ok
    request = server.wait_for(1)[0]
    assert request.header("Content-Encoding") is None
    assert json.loads(request.raw_body)["events"][0]["eventName"] == "purchase"
    ex.shutdown(1)


def test_environment_tier_gives_userless_events_a_user(server: RecordingServer) -> None:
    ex = exporter(server, environment_tier="production")
    plain = exporter(server)
    assert ex.export(Batch((make_event(),))).ok
    assert plain.export(Batch((make_event(),))).ok
    with_tier, without = (r.json()["events"][0] for r in server.wait_for(2))
    assert with_tier["user"] == {"statsigEnvironment": {"tier": "production"}}
    assert "user" not in without
    ex.shutdown(1)
    plain.shutdown(1)


# --- Statsig's limits, checked per event --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a=b", "x;y", "path/[id]", "line\nbreak", "100%", "a" * 65])
def test_bad_names_are_rejected_alone(server: RecordingServer, name: str) -> None:
    ex = exporter(server)
    bad, good = make_event(name), make_event("fine")
    result = ex.export(Batch((bad, good)))
    assert result.status is ExportStatus.PARTIAL
    assert set(result.rejected) == {bad.event_id}
    assert "statsig: event name" in result.rejected[bad.event_id]
    assert [e["eventName"] for e in events_of(server.wait_for(1))] == ["fine"]
    ex.shutdown(1)


def test_long_string_value_is_truncated_and_counted(server: RecordingServer) -> None:
    ex = exporter(server)
    assert ex.export(Batch((make_event(value="v" * 100), make_event(value=7)))).ok
    sent = events_of(server.wait_for(1))
    assert [e["value"] for e in sent] == ["v" * 64, 7]
    assert ex.stats()["values_truncated"] == 1
    ex.shutdown(1)


def test_retries_do_not_count_truncations_twice(server: RecordingServer) -> None:
    ex = exporter(server)
    server.script(Reply(503, {"success": False}))
    batch = Batch((make_event(value="v" * 100),))
    assert ex.export(batch).status is ExportStatus.RETRY
    assert ex.export(batch.retry()).ok
    assert [r.header("STATSIG-RETRY-COUNT") for r in server.wait_for(2)] == ["0", "1"]
    assert ex.stats()["values_truncated"] == 1
    ex.shutdown(1)


def test_oversized_metadata_drops_largest_keys_and_says_which(server: RecordingServer) -> None:
    ex = exporter(server)
    ev = make_event(message="kept", data={"small": "s", "huge": "h" * 5000, "big": "b" * 3000, "mid": "m" * 900})
    assert ex.export(Batch((ev,))).ok
    meta = events_of(server.wait_for(1))[0]["metadata"]
    assert len(json.dumps(meta, separators=(",", ":"), ensure_ascii=False)) <= MAX_METADATA_CHARS
    assert meta["evlog_truncated"] == "huge"
    assert {k: meta[k] for k in ("level", "message", "small", "big", "mid")} == {
        "level": "info", "message": "kept", "small": "s", "big": "b" * 3000, "mid": "m" * 900,
    }  # fmt: skip
    assert ex.stats()["metadata_truncated"] == 1
    ex.shutdown(1)


def test_non_finite_value_is_sent_as_a_string(server: RecordingServer) -> None:
    ex = exporter(server)
    assert ex.export(Batch((make_event(value=float("nan")), make_event(value=float("-inf"))))).ok
    assert [e["value"] for e in events_of(server.wait_for(1))] == ["NaN", "-Infinity"]
    ex.shutdown(1)


# --- batching ----------------------------------------------------------------------------------------------


def test_pipeline_splits_batches_at_max_batch_size(server: RecordingServer) -> None:
    configure(server, max_batch_size=3)
    for i in range(7):
        evlog.log_event(f"e{i}")
    assert evlog.flush(5)
    requests = server.wait_for(3)
    assert sorted(str(r.header("STATSIG-EVENT-COUNT")) for r in requests) == ["1", "3", "3"]
    assert sorted(str(e["eventName"]) for e in events_of(requests)) == [f"e{i}" for i in range(7)]
    assert evlog.stats()["statsig"].sent == 7


def test_batch_past_request_size_is_split_into_several_requests(server: RecordingServer) -> None:
    ex = exporter(server, max_request_bytes=20_000)
    batch = Batch(tuple(make_event(f"e{i}", data={"pad": "x" * 3000}) for i in range(20)))
    assert ex.export(batch).ok
    requests = server.requests_to(PATH)
    assert len(requests) >= 4
    assert all(len(r.body) <= 20_000 for r in requests)
    assert [e["eventName"] for e in events_of(requests)] == [f"e{i}" for i in range(20)]
    assert [int(r.header("STATSIG-EVENT-COUNT") or 0) for r in requests] == [len(r.json()["events"]) for r in requests]
    assert ex.stats()["split_exports"] == 1
    ex.shutdown(1)


def test_default_limit_keeps_requests_under_10_mb(server: RecordingServer) -> None:
    ex = exporter(server, max_batch_size=3000)
    batch = Batch(tuple(make_event(f"e{i}", data={"pad": "x" * 4000}) for i in range(3000)))  # ~12.5 MB of events
    assert ex.export(batch).ok
    requests = server.requests_to(PATH)
    assert len(requests) == 2
    assert all(len(r.body) <= 10_000_000 for r in requests)
    assert sum(len(r.json()["events"]) for r in requests) == 3000
    ex.shutdown(1)


def test_failure_mid_split_retries_only_what_was_not_accepted(server: RecordingServer) -> None:
    ex = exporter(server, max_request_bytes=10_000)
    events = tuple(make_event(f"e{i}", data={"pad": "x" * 3000}) for i in range(6))
    server.script(Reply(202), Reply(503, {"success": False}, headers={"Retry-After": "3"}))
    result = ex.export(Batch(events))
    assert result.status is ExportStatus.PARTIAL
    assert result.retry_after == 3
    accepted = {e["eventName"] for e in server.requests[0].json()["events"]}
    assert result.retry_ids == frozenset(e.event_id for e in events if e.name not in accepted)
    assert len(server.requests) == 2  # stopped pushing once the backend was struggling
    ex.shutdown(1)


# --- retries and failures ----------------------------------------------------------------------------------


def test_503_is_retried_with_the_same_events_and_a_retry_counter(server: RecordingServer) -> None:
    configure(server)
    server.script(Reply(503, {"success": False}), Reply(503, {"success": False}))
    evlog.log_event("purchase")
    assert evlog.flush(5)
    requests = server.wait_for(3)
    assert [r.header("STATSIG-RETRY-COUNT") for r in requests] == ["0", "1", "2"]
    assert requests[0].body == requests[2].body
    stats = evlog.stats()["statsig"]
    assert (stats.sent, stats.retried, stats.dropped_total) == (1, 2, 0)


def test_429_is_retried_after_retry_after(server: RecordingServer, fake: StatsigFake) -> None:
    configure(server)
    fake.answer_next(Reply(429, {"success": False}, headers={"Retry-After": "0.3"}))
    evlog.log_event("purchase")
    assert evlog.flush(5)
    server.wait_for(2)
    assert fake.arrivals[1] - fake.arrivals[0] >= 0.29
    assert evlog.stats()["statsig"].sent == 1


def test_connection_reset_is_retried(server: RecordingServer) -> None:
    configure(server)
    server.script(Fault.RESET)
    evlog.log_event("purchase")
    assert evlog.flush(5)
    assert len(server.wait_for(2)) == 2
    assert evlog.stats()["statsig"].sent == 1


def test_connection_refused_asks_for_a_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections to it are refused
        ex = StatsigExporter(api_key=KEY, endpoint=f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}")
        result = ex.export(Batch((make_event(),)))
    assert result.status is ExportStatus.RETRY
    assert "no response" in result.message
    ex.shutdown(1)


@pytest.mark.parametrize("status", [400, 403])
def test_client_errors_are_not_retried(server: RecordingServer, status: int) -> None:
    drops = configure(server)
    server.script(Reply(status, {"success": False, "message": "nope"}))
    evlog.log_event("purchase")
    assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    assert len(server.requests) == 1
    assert evlog.stats()["statsig"].dropped == {"failed": 1}
    assert drops[0].detail == f"statsig: HTTP {status}: nope"


def test_wrong_key_is_refused_by_the_fake_and_not_retried(server: RecordingServer) -> None:
    ex = StatsigExporter(api_key="secret-wrong", endpoint=endpoint(server))
    result = ex.export(Batch((make_event(),)))
    assert result.status is ExportStatus.FAILURE
    assert "403" in result.message
    ex.shutdown(1)


def test_2xx_with_success_false_is_a_failure(server: RecordingServer) -> None:
    drops = configure(server)
    server.script(Reply(202, {"success": False, "message": "events rejected"}))
    evlog.log_event("purchase")
    assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    assert len(server.requests) == 1
    assert evlog.stats()["statsig"].dropped == {"failed": 1}
    assert "success=false" in drops[0].detail
    assert "events rejected" in drops[0].detail


# --- configuration and secrets -----------------------------------------------------------------------------


def test_configuration_purely_from_environment(server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "statsig")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("EVLOG_STATSIG_API_KEY", KEY)
    monkeypatch.setenv("EVLOG_STATSIG_ENDPOINT", endpoint(server))
    monkeypatch.setenv("EVLOG_STATSIG_ENVIRONMENT_TIER", "development")
    monkeypatch.setenv("EVLOG_STATSIG_MAX_BATCH_SIZE", "2")
    monkeypatch.setenv("EVLOG_STATSIG_COMPRESS", "false")
    monkeypatch.setenv("EVLOG_STATSIG_STRINGIFY_METADATA", "off")
    evlog.configure()
    for i in range(3):
        evlog.log_event(f"e{i}", data={"n": i})
    assert evlog.flush(5)
    requests = server.wait_for(2)
    assert [r.header("Content-Encoding") for r in requests] == [None, None]
    sent = events_of(requests)
    assert [e["metadata"]["n"] for e in sent] == [0, 1, 2]
    assert sent[0]["user"] == {"statsigEnvironment": {"tier": "development"}}


def test_missing_api_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "statsig")
    with pytest.raises(ConfigError, match="EVLOG_STATSIG_API_KEY"):
        evlog.configure()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "http://statsig.example.com/v1/log_event"}, "refusing plain http"),
        ({"endpoint": "ftp://example.com"}, "http"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"timeout": 0.0}, "timeout"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        StatsigExporter(api_key=KEY, **options)
    assert KEY not in str(info.value)


def test_insecure_http_needs_the_opt_in() -> None:
    ex = StatsigExporter(api_key=KEY, endpoint="http://statsig.internal/v1/log_event", allow_insecure_http=True)
    assert ex.options.endpoint == "http://statsig.internal/v1/log_event"


def test_api_key_never_in_reprs_or_logs(server: RecordingServer, caplog: pytest.LogCaptureFixture) -> None:
    assert KEY not in repr(StatsigOptions(api_key=KEY))
    configure(server)
    server.script(Reply(400, {"success": False, "message": f"bad key {KEY}"}))
    with caplog.at_level(logging.WARNING, logger="evlog"):
        evlog.log_event("purchase")
        assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    assert "bad key ***" in caplog.text
    assert KEY not in caplog.text
    ex = exporter(server)
    assert KEY not in repr(ex)
    assert KEY not in repr(ex.options)
    ex.shutdown(1)
