"""The viewer's server: loopback only, a bounded ring, what it takes at /ingest and gives at /api/events."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from evlog.viewer import EventStore, ViewerServer


@pytest.fixture
def viewer() -> Iterator[ViewerServer]:
    with ViewerServer(port=0) as server:
        yield server


def _request(
    server: ViewerServer, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(raw) if is_json else raw
    finally:
        conn.close()


def _batch(*names: str, pid: int = 7) -> dict[str, Any]:
    return {
        "process": {"pid": pid, "name": "app.py"},
        "stats": {"viewer": {"sent": 3, "queued": 1, "dropped": {"queue_full": 2}}},
        "events": [{"name": n, "level": "info", "timestamp": "2026-01-01T00:00:00+00:00"} for n in names],
    }


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com", ""])
def test_the_server_refuses_to_listen_anywhere_but_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only") as caught:
        ViewerServer(host, 0)
    assert repr(host) in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_names_are_accepted(host: str) -> None:
    try:
        server = ViewerServer(host, 0)
    except OSError:  # pragma: no cover - e.g. no IPv6 on this machine
        pytest.skip(f"cannot listen on {host}")
    with server:
        assert _request(server, "GET", "/api/events")[0] == 200


def test_ingested_events_come_back_in_order_after_a_sequence_number(viewer: ViewerServer) -> None:
    assert _request(viewer, "POST", "/ingest", _batch("a", "b", "c")) == (200, {"accepted": 3})
    status, page = _request(viewer, "GET", "/api/events?after=1")
    assert status == 200
    assert [(e["seq"], e["name"]) for e in page["events"]] == [(2, "b"), (3, "c")]
    assert page["last"] == 3
    assert page["events"][0]["source"] == "app.py (pid 7)"


def test_each_process_s_latest_counters_are_shown(viewer: ViewerServer) -> None:
    _request(viewer, "POST", "/ingest", _batch("a"))
    _request(viewer, "POST", "/ingest", _batch("b", "c"))
    (process,) = _request(viewer, "GET", "/api/events")[1]["processes"]
    assert process["received"] == 3
    assert process["stats"]["viewer"]["dropped"] == {"queue_full": 2}


def test_the_ring_keeps_the_newest_events_and_says_how_many_a_late_reader_missed() -> None:
    store = EventStore(capacity=3)
    store.add([{"name": str(i)} for i in range(5)], source="t")
    page = store.after(0)
    assert [e["name"] for e in page["events"]] == ["2", "3", "4"]
    assert page["missed"] == 2
    assert len(store) == 3


def test_a_page_from_before_a_restart_starts_over() -> None:
    store = EventStore()
    store.add([{"name": "x"}], source="t")
    assert [e["name"] for e in store.after(500)["events"]] == ["x"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "text/plain"}, b'{"events": []}', 415),
        ({"Content-Type": "application/json"}, b"not json", 400),
        ({"Content-Type": "application/json"}, b'{"no": "events"}', 400),
    ],
)
def test_ingest_refuses_what_is_not_a_json_batch(
    viewer: ViewerServer, headers: dict[str, str], body: bytes, status: int
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=5)
    try:
        conn.request("POST", "/ingest", body=body, headers=headers)
        assert conn.getresponse().status == status
    finally:
        conn.close()
    assert len(viewer.store) == 0


def test_a_request_addressed_to_another_host_name_is_refused(viewer: ViewerServer) -> None:
    """DNS rebinding: a page from evil.example resolved to 127.0.0.1 must not read the events."""
    assert _request(viewer, "GET", "/api/events", headers={"Host": "evil.example"})[0] == 403


def test_the_page_and_its_files_are_served_and_nothing_else(viewer: ViewerServer) -> None:
    status, page = _request(viewer, "GET", "/")
    assert status == 200
    assert b"/static/viewer.js" in page
    assert _request(viewer, "GET", "/static/uPlot.iife.min.js")[0] == 200
    assert _request(viewer, "GET", "/static/../_server.py")[0] == 404
    assert _request(viewer, "GET", "/static/__init__.py")[0] == 404


def test_close_ends_the_server_and_a_keep_alive_connection_a_browser_holds() -> None:
    server = ViewerServer(port=0).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/api/events")
    conn.getresponse().read()  # the connection stays open, its request thread waiting for the next request
    before = threading.active_count()
    server.close()
    conn.close()
    assert threading.active_count() < before
    assert not [t for t in threading.enumerate() if t.name == "evlog-viewer"]
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=1).request("GET", "/")
