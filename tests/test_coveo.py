"""The Coveo exporter against a loopback stand-in for the UA Write API v15 (tests/support/coveo_fake.py)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import evlog
from evlog import ConfigError
from evlog._accounting import Drop
from evlog._event import Event, ExceptionInfo, Level, User
from evlog.exporters._base import Batch, ExportStatus
from evlog.exporters.coveo import CoveoExporter, client_id_for, default_endpoint, normalize_key
from support.coveo_fake import PATH, TOKEN, CoveoFake
from support.events import make_event
from support.loopback import Fault, RecordingServer, Reply, Request

MakeExporter = Callable[..., CoveoExporter]


@pytest.fixture
def fake() -> CoveoFake:
    return CoveoFake()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RecordingServer]:
    """One server for the module: stopping one takes half a second (serve_forever's poll interval)."""
    with RecordingServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: RecordingServer, fake: CoveoFake) -> RecordingServer:
    shared_server.reset()
    shared_server.handler = fake
    return shared_server


@pytest.fixture
def make_exporter(server: RecordingServer) -> Iterator[MakeExporter]:
    made: list[CoveoExporter] = []

    def make(**options: Any) -> CoveoExporter:
        options.setdefault("endpoint", server.url + PATH)
        options.setdefault("access_token", TOKEN)
        exporter = CoveoExporter(**options)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown(1)


def send(exporter: CoveoExporter, *events: Event) -> Any:
    return exporter.export(Batch(tuple(events)))


def query_of(request: Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.path).query)


# --- URL and authentication ----------------------------------------------------------------------------------


def test_default_endpoint_uses_the_organization_hosts() -> None:
    assert default_endpoint("MyOrg9sd8") == "https://myorg9sd8.analytics.org.coveo.com/rest/ua/v15/analytics/custom"
    assert (
        default_endpoint("myorg", hipaa=True)
        == "https://myorg.analytics.orghipaa.coveo.com/rest/ua/v15/analytics/custom"
    )
    assert CoveoExporter(org_id="myorg", access_token=TOKEN, hipaa=True).options.url == default_endpoint(
        "myorg", hipaa=True
    )


def test_endpoint_overrides_org_and_hipaa() -> None:
    exporter = CoveoExporter(org_id="myorg", hipaa=True, access_token=TOKEN, endpoint="https://proxy.example/ua")
    assert exporter.options.url == "https://proxy.example/ua"


def test_request_path_query_and_headers(server: RecordingServer, make_exporter: MakeExporter) -> None:
    exporter = make_exporter()
    result = send(exporter, make_event(user=User(id="user-123")))
    assert result.ok
    (request,) = server.requests
    assert request.method == "POST"
    assert urlsplit(request.path).path == PATH
    assert query_of(request) == {"visitor": [client_id_for("user-123")]}
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Content-Encoding") is None


def test_endpoint_query_is_kept(server: RecordingServer, make_exporter: MakeExporter) -> None:
    exporter = make_exporter(endpoint=f"{server.url}{PATH}?org=myorg")
    assert send(exporter, make_event(user=User(id="u"))).ok
    assert query_of(server.requests[0]) == {"org": ["myorg"], "visitor": [client_id_for("u")]}


def test_no_visitor_without_identity(server: RecordingServer, make_exporter: MakeExporter) -> None:
    assert send(make_exporter(), make_event()).ok
    (request,) = server.requests
    assert query_of(request) == {}
    assert "clientId" not in request.json()


def test_visitor_cookie_is_not_replayed(server: RecordingServer, make_exporter: MakeExporter) -> None:
    """The fake sets a visitor cookie for events without clientId, as Coveo does; replaying it would merge
    unrelated anonymous events into one visitor."""
    exporter = make_exporter(max_concurrency=1)
    assert send(exporter, make_event()).ok
    assert send(exporter, make_event()).ok
    _first, second = server.wait_for(2)
    assert second.header("Cookie") is None


# --- body -----------------------------------------------------------------------------------------------------


def test_body_field_by_field(server: RecordingServer, make_exporter: MakeExporter, fake: CoveoFake) -> None:
    exporter = make_exporter(origin_level_1="MySearchHub", origin_level_2="all", origin_context="Search")
    user = User(id="alice@example.com", locale="fr-CA", user_agent="Mozilla/5.0 test")
    event = make_event(
        "toggleLayout",
        category="preferences",
        level=Level.WARNING,
        labels=("ui", "beta"),
        message="layout changed",
        data={"My Key": "v1", "UPPER_key": 2, "nested": {"a": 1}},
        user=user,
    )
    assert send(exporter, event).ok
    assert fake.bodies == [
        {
            "language": "fr",
            "eventType": "preferences",
            "eventValue": "toggleLayout",
            "anonymous": False,
            "userAgent": "Mozilla/5.0 test",
            "originLevel1": "MySearchHub",
            "originLevel2": "all",
            "originContext": "Search",
            "clientId": client_id_for("alice@example.com"),
            "customData": {
                "my_key": "v1",
                "upper_key": 2,
                "nested": {"a": 1},
                "level": "warning",
                "labels": "ui,beta",
                "message": "layout changed",
            },
        }
    ]


def test_defaults_without_category_or_locale(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    exporter = make_exporter(language="de", default_event_type="app", tracking_id="online_store")
    assert send(exporter, make_event("opened", category=None, value=3, session_id="s-1")).ok
    (body,) = fake.bodies
    assert (body["eventType"], body["eventValue"], body["language"]) == ("app", "opened", "de")
    assert body["anonymous"] is True
    assert body["trackingId"] == "online_store"
    assert body["customData"] == {"level": "info", "value": 3, "session_id": "s-1"}


def test_exception_goes_to_custom_data(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    exc = ExceptionInfo("ValueError", "bad input")
    assert send(make_exporter(), make_event(exception=exc)).ok
    assert fake.bodies[0]["customData"]["exception_type"] == "ValueError"
    assert fake.bodies[0]["customData"]["exception_message"] == "bad input"


def test_username_only_when_enabled(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    user = User(id="alice@example.com")
    assert send(make_exporter(), make_event(user=user)).ok
    assert send(make_exporter(send_username=True), make_event(user=user)).ok
    assert "username" not in fake.bodies[0]
    assert fake.bodies[1]["username"] == "alice@example.com"


def test_device_id_without_user_id_is_anonymous(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    user = User(custom_ids={"device_id": "d-1"})
    assert send(make_exporter(send_username=True), make_event(user=user)).ok
    (body,) = fake.bodies
    assert body["anonymous"] is True
    assert "username" not in body
    assert body["clientId"] == client_id_for("d-1")


def test_device_id_preferred_over_user_id(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    user = User(id="alice", custom_ids={"stableID": "s-1"})
    assert send(make_exporter(), make_event(user=user)).ok
    assert fake.bodies[0]["clientId"] == client_id_for("s-1")
    assert fake.bodies[0]["anonymous"] is False


def test_client_id_stable_and_uuid_passthrough(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    given = str(uuid.uuid4())
    events = [
        make_event(user=User(id="user-123")),
        make_event(user=User(id="user-123")),
        make_event(user=User(id=given)),
    ]
    assert send(make_exporter(), *events).ok
    assert send(make_exporter(), make_event(user=User(id="user-123"))).ok
    ids = sorted(body["clientId"] for body in fake.bodies)
    derived = client_id_for("user-123")
    assert ids == sorted([derived, derived, derived, given])
    assert uuid.UUID(derived).version == 5


def test_client_id_matches_coveo_analytics_set_client_id() -> None:
    """coveo.analytics setClientId("user-123", "my-namespace") gives this id (reference test vector)."""
    assert client_id_for("user-123", "my-namespace") == "4a0febe8-6a13-55fe-824a-9babfcff251c"
    assert client_id_for("user-123") != client_id_for("user-123", "my-namespace")


def test_custom_data_key_normalisation() -> None:
    assert normalize_key("My Key") == "my_key"
    assert normalize_key("UPPER_key") == "upper_key"
    assert normalize_key("user.plan-type") == "user_plan_type"
    assert normalize_key("Café au lait") == "cafe_au_lait"
    assert normalize_key("") == "_"


def test_coveo_fields_in_data_are_sent_as_fields(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    search_uid = str(uuid.uuid4())
    data = {
        "originLevel1": "Hub",
        "originLevel3": "https://example.com/page",
        "lastSearchQueryUid": search_uid,
        "outcome": -2,
        "splitTestRunName": "test",
        "splitTestRunVersion": "alpha",
        "userDisplayName": "Alice",
        "plan": "pro",
    }
    assert send(make_exporter(origin_level_1="Default"), make_event(data=data)).ok
    (body,) = fake.bodies
    for key in ("originLevel1", "originLevel3", "lastSearchQueryUid", "outcome", "splitTestRunName"):
        assert body[key] == data[key]
    assert body["splitTestRunVersion"] == "alpha"
    assert body["userDisplayName"] == "Alice"
    assert body["customData"] == {"plan": "pro", "level": "info"}


def test_app_data_wins_over_event_fields_in_custom_data(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    assert send(make_exporter(), make_event(message="m", data={"Message": "mine"})).ok
    assert fake.bodies[0]["customData"]["message"] == "mine"


# --- limits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"name": "v" * 129}, "eventValue is 129 characters"),
        ({"category": "t" * 129}, "eventType is 129 characters"),
        ({"data": {"originLevel1": "o" * 129}}, "originLevel1 is 129 characters"),
        ({"data": {"originContext": "o" * 129}}, "originContext is 129 characters"),
        ({"data": {"outcome": 6}}, "outcome must be an integer from -5 to 5"),
        ({"data": {"outcome": "3"}}, "outcome must be an integer from -5 to 5"),
        ({"data": {"outcome": True}}, "outcome must be an integer from -5 to 5"),
        ({"data": {"clientId": "not-a-uuid"}}, "clientId must be a UUID"),
        ({"data": {"trackingId": "Online Store"}}, "trackingId may hold only"),
        ({"data": {"A b": 1, "a_B": 2}}, "both become 'a_b'"),
        ({"data": {"big": "x" * 33_000}}, "customData is"),
    ],
)
def test_limits_reject_before_sending(
    server: RecordingServer, make_exporter: MakeExporter, fields: dict[str, Any], rule: str
) -> None:
    event = make_event(**fields)
    result = send(make_exporter(), event)
    assert result.status is ExportStatus.PARTIAL
    assert rule in result.rejected[event.event_id]
    assert result.retry_ids is None
    assert server.requests == []


def test_long_username_rejected(server: RecordingServer, make_exporter: MakeExporter) -> None:
    event = make_event(user=User(id="u" * 129))
    result = send(make_exporter(send_username=True), event)
    assert "username is 129 characters" in result.rejected[event.event_id]
    assert server.requests == []


@pytest.mark.parametrize("category", [None, ""])
def test_missing_event_type_rejected(make_exporter: MakeExporter, category: str | None) -> None:
    event = make_event(category=category)
    result = send(make_exporter(default_event_type=None), event)
    assert "eventType is required" in result.rejected[event.event_id]


def test_referrer_and_user_agent_truncated_to_1024(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    event = make_event(data={"originLevel3": "r" * 1120}, user=User(user_agent="a" * 2000))
    assert send(make_exporter(), event).ok
    assert fake.bodies[0]["originLevel3"] == "r" * 1024
    assert fake.bodies[0]["userAgent"] == "a" * 1024


def test_only_bad_events_rejected(make_exporter: MakeExporter, fake: CoveoFake) -> None:
    good, bad = make_event("ok"), make_event("bad", data={"outcome": 9})
    result = send(make_exporter(), good, bad)
    assert set(result.rejected) == {bad.event_id}
    assert [body["eventValue"] for body in fake.bodies] == ["ok"]


# --- server answers -------------------------------------------------------------------------------------------


def test_server_400_keeps_coveo_message(server: RecordingServer, make_exporter: MakeExporter) -> None:
    server.script(Reply(400, {"message": "Field outcome has an invalid value", "type": "InvalidObject"}))
    event = make_event()
    result = send(make_exporter(), event)
    assert result.status is ExportStatus.PARTIAL
    assert result.rejected[event.event_id] == "Coveo HTTP 400 InvalidObject: Field outcome has an invalid value"


def test_bad_token_is_a_failure(server: RecordingServer, make_exporter: MakeExporter) -> None:
    result = send(make_exporter(access_token="xx-wrong-token-value"), make_event(), make_event())
    assert result.status is ExportStatus.FAILURE
    assert "Coveo HTTP 401 InvalidTokenException: Invalid token" in result.message
    assert "xx-wrong-token-value" not in result.message


def test_mixed_outcomes_in_one_batch(server: RecordingServer, fake: CoveoFake, make_exporter: MakeExporter) -> None:
    def handler(request: Request) -> Reply:
        value = request.json()["eventValue"]
        if value == "busy":
            return Reply(503, "overloaded", headers={"Retry-After": "2"})
        if value == "bad":
            return Reply(400, {"message": "nope", "type": "InvalidObject"})
        return fake(request)

    server.handler = handler
    ok, busy, bad = make_event("ok"), make_event("busy"), make_event("bad")
    result = send(make_exporter(), ok, busy, bad)
    assert result.status is ExportStatus.PARTIAL
    assert result.retry_ids == {busy.event_id}
    assert result.retry_after == 2
    assert set(result.rejected) == {bad.event_id}


@pytest.mark.parametrize("status", [408, 429, 500, 503, 520])
def test_transient_statuses_are_retried(server: RecordingServer, make_exporter: MakeExporter, status: int) -> None:
    server.script(Reply(status, {"message": "try later", "type": "Unavailable"}, headers={"Retry-After": "3"}))
    result = send(make_exporter(), make_event())
    assert result.status is ExportStatus.RETRY
    assert result.retry_after == 3
    assert result.message == f"Coveo HTTP {status} Unavailable: try later"


def test_connection_reset_is_retried(server: RecordingServer, make_exporter: MakeExporter) -> None:
    server.script(Fault.RESET)
    result = send(make_exporter(), make_event())
    assert result.status is ExportStatus.RETRY
    assert "no response" in result.message


def test_stats_keep_last_visitor_id(make_exporter: MakeExporter) -> None:
    exporter = make_exporter()
    assert exporter.stats()["last_visitor_id"] is None
    assert send(exporter, make_event(user=User(id="user-123"))).ok
    assert exporter.stats()["last_visitor_id"] == client_id_for("user-123")
    assert uuid.UUID(exporter.stats()["last_visit_id"])


def test_concurrency_is_bounded(server: RecordingServer, fake: CoveoFake, make_exporter: MakeExporter) -> None:
    lock = threading.Condition()
    state = {"now": 0, "peak": 0}

    def handler(request: Request) -> Reply:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            lock.notify_all()
            # Hold the request: a 4th one ends the wait at once (and the test), else all three overlap.
            lock.wait_for(lambda: state["now"] > 3, timeout=0.1)
        reply = fake(request)
        with lock:
            state["now"] -= 1
        return reply

    server.handler = handler
    result = send(make_exporter(max_concurrency=3), *[make_event(str(i)) for i in range(9)])
    assert result.ok
    assert len(fake.bodies) == 9
    assert state["peak"] == 3


# --- through the pipeline ----------------------------------------------------------------------------------------


def configure(server: RecordingServer, **options: Any) -> list[Drop]:
    drops: list[Drop] = []
    evlog.configure(
        exporters={"coveo": {"endpoint": server.url + PATH, "access_token": TOKEN, **options}},
        flush_interval=0.05,
        retry_initial_backoff=0.01,
        on_drop=drops.append,
    )
    return drops


@pytest.mark.parametrize("status", [429, 503])
def test_pipeline_retries_429_and_503(server: RecordingServer, fake: CoveoFake, status: int) -> None:
    configure(server)
    server.script(Reply(status, {"message": "slow down", "type": "Throttled"}, headers={"Retry-After": "0"}))
    evlog.log_event("facetSearch", category="facet", user=User(id="u1"))
    assert evlog.flush(5)
    assert len(server.requests) == 2
    assert len(fake.bodies) == 1
    stats = evlog.stats()["coveo"]
    assert (stats.sent, stats.retried, stats.dropped_total) == (1, 1, 0)
    assert stats.details["last_visitor_id"] == client_id_for("u1")


def test_pipeline_does_not_retry_400(server: RecordingServer) -> None:
    drops = configure(server)
    server.script(Reply(400, {"message": "Invalid value for outcome", "type": "InvalidObject"}))
    evlog.log_event("facetSearch", category="facet")
    assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    assert len(server.requests) == 1
    stats = evlog.stats()["coveo"]
    assert (stats.sent, stats.retried, dict(stats.dropped)) == (0, 0, {"rejected": 1})
    assert "Invalid value for outcome" in drops[0].detail


def test_pipeline_reports_limit_rejections(server: RecordingServer) -> None:
    drops = configure(server)
    evlog.log_event("x" * 200, category="facet")
    assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    assert server.requests == []
    assert evlog.stats()["coveo"].dropped == {"rejected": 1}
    assert "eventValue is 200 characters" in drops[0].detail


def test_configuration_from_environment_only(server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "coveo")
    monkeypatch.setenv("EVLOG_COVEO_ORG_ID", "myorg")
    monkeypatch.setenv("EVLOG_COVEO_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("EVLOG_COVEO_ENDPOINT", server.url + PATH)
    monkeypatch.setenv("EVLOG_COVEO_ORIGIN_LEVEL_1", "EnvHub")
    monkeypatch.setenv("EVLOG_COVEO_SEND_USERNAME", "true")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "0.05")
    evlog.configure()
    evlog.log_event("facetSearch", category="facet", user=User(id="bob"))
    assert evlog.flush(5)
    (request,) = server.wait_for(1)
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.json()["originLevel1"] == "EnvHub"
    assert request.json()["username"] == "bob"


# --- configuration and secrets --------------------------------------------------------------------------------------


def test_org_id_or_endpoint_required() -> None:
    with pytest.raises(ConfigError, match="set org_id"):
        CoveoExporter(access_token=TOKEN)


def test_token_required_for_coveo_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "coveo")
    monkeypatch.setenv("EVLOG_COVEO_ORG_ID", "myorg")
    with pytest.raises(ConfigError, match="EVLOG_COVEO_ACCESS_TOKEN"):
        evlog.configure()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"org_id": "my.org/evil"}, "org_id must be"),
        ({"org_id": "o", "endpoint": "http://analytics.example.com/custom"}, "refusing plain http"),
        ({"org_id": "o", "tracking_id": "Online Store"}, "tracking_id"),
        ({"org_id": "o", "origin_level_1": "h" * 129}, "origin_level_1 is 129 characters"),
        ({"org_id": "o", "language": ""}, "language"),
    ],
)
def test_bad_options_raise_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CoveoExporter(access_token=TOKEN, **options)


def test_token_never_in_repr_or_logs(
    server: RecordingServer, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter()
    assert TOKEN not in repr(exporter)
    assert TOKEN not in repr(exporter.options)
    server.script(Reply(400, {"message": f"bad token {TOKEN}", "type": "InvalidObject"}))
    event = make_event()
    assert TOKEN not in send(exporter, event).rejected[event.event_id]
    configure(server)
    server.script(Reply(403, {"message": f"token {TOKEN} lacks a privilege", "type": "Forbidden"}))
    with caplog.at_level(logging.DEBUG, logger="evlog"):
        evlog.log_event("facetSearch", category="facet")
        assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    assert "lacks a privilege" in caplog.text
    assert TOKEN not in caplog.text
