"""What ``evlog doctor`` checks for one exporter without sending an event: name resolution, connection and TLS,
and credentials where the backend has a harmless way to test them.

Harmless means nothing is recorded: Statsig gets an empty ``events`` list, the session server a ``GET`` of a
session that cannot exist, an AdCP agent the MCP ``initialize`` handshake (closed again). Where no such request
exists (Coveo: every logging endpoint records), the verdict says so rather than guessing.
"""

from __future__ import annotations

import enum
import os
import socket
import ssl
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from evlog.exporters._base import Exporter

__all__ = ["Check", "Verdict", "check_exporter"]

_TIMEOUT = 5.0
_NO_SESSION = "00000000-0000-0000-0000-000000000000"


class Verdict(enum.Enum):
    OK = "ok"
    UNCHECKED = "unchecked"
    WARN = "warn"
    FAIL = "FAIL"


@attrs.frozen
class Check:
    """One finding: what was checked, the verdict, what was seen, and a one-line fix when it failed."""

    subject: str
    verdict: Verdict
    detail: str
    fix: str = ""


def _reach(subject: str, url: str) -> Iterator[Check]:
    """DNS, then TCP, then TLS for https: each step's failure named, so the fix can be specific."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        yield Check(subject, Verdict.FAIL, f"cannot resolve {host!r}: {exc}", "check the host name in the URL and DNS")
        return
    try:
        sock = socket.create_connection((host, port), timeout=_TIMEOUT)
    except OSError as exc:
        yield Check(
            subject,
            Verdict.FAIL,
            f"{host}:{port} unreachable: {exc.strerror or exc}",
            "check the URL's port, that the service runs, and firewalls/proxies between here and it",
        )
        return
    with sock:
        if parts.scheme != "https":
            yield Check(subject, Verdict.OK, f"{host}:{port} reachable (plain http)")
            return
        try:
            with ssl.create_default_context().wrap_socket(sock, server_hostname=host) as tls:
                version = tls.version()
        except (OSError, ssl.SSLError) as exc:
            yield Check(
                subject,
                Verdict.FAIL,
                f"TLS with {host} failed: {exc}",
                "check the certificate (or set REQUESTS_CA_BUNDLE for a private CA)",
            )
            return
    yield Check(subject, Verdict.OK, f"{host}:{port} reachable, TLS ok ({version})")


def _reached(subject: str, url: str) -> Generator[Check, None, bool]:
    """The reachability checks; their return value says whether going further makes sense."""
    ok = True
    for check in _reach(subject, url):
        ok = ok and check.verdict is not Verdict.FAIL
        yield check
    return ok


def _http(secret: str | None, headers: dict[str, str] | None = None) -> Any:
    from evlog.exporters.http import HttpClient

    return HttpClient(timeout=_TIMEOUT, headers=headers, secrets=[secret])


def _credential_verdict(subject: str, outcome: Any, accepted: Callable[[int], bool], fix: str) -> Check:
    if outcome.status is None:
        return Check(subject, Verdict.FAIL, f"no answer: {outcome.describe()}", "see the reachability check above")
    if outcome.status in (401, 403):
        return Check(subject, Verdict.FAIL, f"refused with HTTP {outcome.status}: {outcome.server_message()}", fix)
    if accepted(outcome.status):
        return Check(subject, Verdict.OK, f"accepted (HTTP {outcome.status})")
    return Check(subject, Verdict.WARN, f"unexpected HTTP {outcome.status}: {outcome.server_message()}", "")


def _statsig(opts: Any) -> Iterator[Check]:
    if not (yield from _reached("statsig endpoint", opts.endpoint)):
        return
    http = _http(opts.api_key, {"STATSIG-API-KEY": opts.api_key})
    try:
        outcome = http.post_json(opts.endpoint, {"events": []})  # an empty batch: nothing to record
    finally:
        http.close()
    yield _credential_verdict(
        "statsig api_key",
        outcome,
        lambda s: s < 300 or s == 400,  # 400: past authentication, refused only for the empty list
        "set EVLOG_STATSIG_API_KEY to a Server Secret key (Statsig console > Project settings > Keys)",
    )


def _session_server(opts: Any) -> Iterator[Check]:
    base = opts.url.rstrip("/")
    if not (yield from _reached("session server", base)):
        return
    headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
    http = _http(opts.api_key, headers)
    try:
        outcome = http.request("GET", f"{base}/api/sessions/{_NO_SESSION}")
    finally:
        http.close()
    yield _credential_verdict(
        "session server api_key",
        outcome,
        lambda s: s in (200, 404),  # 404: authenticated, and the session does not exist
        "set EVLOG_SESSION_SERVER_API_KEY to the server's api_key (its config.json)",
    )


def _adcp(opts: Any) -> Iterator[Check]:
    from evlog._version import __version__
    from evlog.exporters._mcp import ACCEPT

    if not (yield from _reached("AdCP agent", opts.agent_url)):
        return
    headers = {"Accept": ACCEPT}
    if opts.token:
        headers[opts.auth_header] = f"{opts.auth_scheme} {opts.token}" if opts.auth_scheme else opts.token
    http = _http(opts.token, headers)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": opts.protocol_version,
            "capabilities": {},
            "clientInfo": {"name": "evlog-doctor", "version": __version__},
        },
    }
    try:
        outcome = http.post_json(opts.agent_url, body, stop_when=lambda _h, so_far: b'"id"' in so_far)
        session = next((v for k, v in outcome.headers.items() if k.lower() == "mcp-session-id"), None)
        if session:
            http.request("DELETE", opts.agent_url, headers={"Mcp-Session-Id": session})
    finally:
        http.close()
    check = _credential_verdict(
        "AdCP MCP handshake", outcome, lambda s: s < 300, "set EVLOG_ADCP_TOKEN to the token the seller issued"
    )
    yield check
    if check.verdict is Verdict.OK:
        yield Check(
            "AdCP token",
            Verdict.UNCHECKED,
            "not checkable without sending an event (AdCP servers exempt the handshake from authentication)",
        )


def _coveo(opts: Any) -> Iterator[Check]:
    if not (yield from _reached("coveo endpoint", opts.url)):
        return
    yield Check(
        "coveo access_token",
        Verdict.UNCHECKED,
        "not checkable without sending an event (every Coveo logging endpoint records what it gets)",
    )


def _jsonl(opts: Any) -> Iterator[Check]:
    directory = Path(opts.path).resolve().parent
    if os.access(directory, os.W_OK):
        yield Check("jsonl path", Verdict.OK, f"{directory} is writable")
    else:
        yield Check("jsonl path", Verdict.FAIL, f"cannot write in {directory}", "point EVLOG_JSONL_PATH elsewhere")


def _otel(_opts: Any) -> Iterator[Check]:
    yield Check(
        "otel",
        Verdict.UNCHECKED,
        "sends through the app's OpenTelemetry LoggerProvider, which exists only in the app",
    )


_CHECKS: dict[str, Callable[[Any], Iterator[Check]]] = {
    "statsig": _statsig,
    "session_server": _session_server,
    "adcp": _adcp,
    "coveo": _coveo,
    "jsonl": _jsonl,
    "otel": _otel,
}


def check_exporter(exporter: Exporter) -> list[Check]:
    """Every check that applies to ``exporter``; one OK line for exporters with nothing to reach."""
    run = _CHECKS.get(exporter.name)
    if run is None:
        return [Check(exporter.name, Verdict.OK, "local exporter, nothing to reach")]
    return [Check(f"{exporter.name}: {c.subject}", c.verdict, c.detail, c.fix) for c in run(exporter.options)]
