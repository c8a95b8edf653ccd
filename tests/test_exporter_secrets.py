"""No exporter shows its credential anywhere, even when the backend echoes it back across a truncation point."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import evlog
from evlog import Drop
from evlog.exporters.http import HttpClient
from support.backends import open_backend
from support.key_echo import CUT, echo_headers, leaks, random_key
from support.loopback import RecordingServer, Request

#: The requests each exporter's echoing backend answers with the echo (the others go to the fake, so that
#: sessions still open and events reach the request that carries the key).
ECHOED: dict[str, Callable[[Request], bool]] = {
    "statsig": lambda r: True,
    "coveo": lambda r: True,
    "session_server": lambda r: r.path.endswith("/events"),
    "adcp": lambda r: (r.json() or {}).get("method") == "tools/call",
}


def test_http_outcome_holds_no_secret_whole_or_cut(recording_server: RecordingServer) -> None:
    key = random_key()
    recording_server.handler = echo_headers(key)
    client = HttpClient(timeout=2.0, headers={"Authorization": f"Bearer {key}"}, secrets=[key])
    try:
        outcome = client.post_json(recording_server.url + "/x", {})
    finally:
        client.close()
    assert recording_server.requests[0].header("Authorization") == f"Bearer {key}"
    assert outcome.status == 400
    assert len(outcome.text) > CUT
    shown = [outcome.text, outcome.describe(), outcome.server_message(), repr(outcome), str(outcome.headers)]
    assert leaks(key, "\n".join(shown)) == []


@pytest.mark.parametrize("status", [400, 503])
@pytest.mark.parametrize("name", sorted(ECHOED))
def test_exporter_never_shows_its_key(name: str, status: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="evlog")
    key = random_key()
    with open_backend(name, secret=key) as backend:
        assert backend.server is not None
        fake, echo, wanted = backend.server.handler, echo_headers(key, status), ECHOED[name]
        backend.server.handler = lambda r: echo(r) if wanted(r) else fake(r)
        exporter = backend.make()
        drops: list[Drop] = []
        evlog.configure(
            exporters=[exporter],
            on_drop=drops.append,
            flush_interval=0.05,
            retry_initial_backoff=0.01,
            retry_max_backoff=0.05,
            retry_deadline=0.3,
        )
        evlog.log_event("lead", data={"click_id": "abc", "click_id_type": "gclid"})
        assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
        stats = evlog.stats()
        shown = [repr(stats), str(stats), repr(exporter), repr(exporter.options), repr(exporter.stats())]
        shown += [drop.detail for drop in drops]
        assert evlog.shutdown(timeout=3)
        assert any(key in v for r in backend.server.requests if wanted(r) for v in r.headers.values())
    assert drops, "the event should have been dropped with the server's message"
    assert leaks(key, "\n".join(shown) + caplog.text) == []
