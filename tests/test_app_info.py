"""release / environment / service: declared once, on every event, in each backend's own place for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evlog
from evlog.exporters._base import AppInfo
from support.datacat_fake import DataCatFake
from support.loopback import RecordingServer
from support.statsig_fake import KEY, PATH, StatsigFake, events_of

APP = {"release": "2.4.1", "environment": "staging", "service": "checkout"}


def test_the_options_come_from_the_environment_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVLOG_RELEASE", "9.9")
    monkeypatch.setenv("EVLOG_SERVICE", "api")
    config = evlog.configure(exporters=["memory"])
    exporter = config.exporters[0]
    assert exporter.app == AppInfo(release="9.9", environment=None, service="api")


def test_jsonl_writes_them_on_every_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    evlog.configure(exporters={"jsonl": {"path": str(path)}}, **APP)
    evlog.log_event("a")
    assert evlog.flush(5)
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert {k: line[k] for k in APP} == APP


def test_statsig_sends_the_environment_tier_and_the_app_version() -> None:
    with RecordingServer(StatsigFake()) as server:
        evlog.configure(exporters={"statsig": {"api_key": KEY, "endpoint": server.url + PATH}}, **APP)
        evlog.log_event("with user", user=evlog.User(id=7))
        evlog.log_event("without user")
        assert evlog.flush(5)
        users = [e["user"] for e in events_of(server.requests_to(PATH))]
    assert users == [
        {"userID": "7", "appVersion": "2.4.1", "statsigEnvironment": {"tier": "staging"}},
        {"appVersion": "2.4.1", "statsigEnvironment": {"tier": "staging"}},
    ]


def test_the_session_server_creates_its_session_for_the_service_and_release() -> None:
    with DataCatFake() as fake:
        evlog.configure(exporters={"session_server": {"url": fake.url, "heartbeat_interval": 0}}, **APP)
        evlog.log_event("a")
        assert evlog.flush(5)
        session = fake.only_session()
    assert (session.product, session.version) == ("checkout", "2.4.1")


def test_otel_puts_them_in_the_resource_of_the_provider_it_builds() -> None:
    from evlog.exporters.otel import OtelExporter

    exporter = OtelExporter()
    exporter.app = AppInfo(**APP)
    assert exporter._app_resource() == {
        "service.name": "checkout",
        "service.version": "2.4.1",
        "deployment.environment.name": "staging",
    }
