"""A minimal MCP client over Streamable HTTP (revision 2025-06-18), built on the shared ``HttpClient``.

Only what calling one tool needs: the ``initialize`` handshake, the session id and protocol version headers
on every later request, answers as plain JSON or as a Server-Sent Events stream, a new session when the
server says the old one is gone (404), and ``DELETE`` to end the session. The MCP SDK is not used: it is
asyncio-based and heavy, and the exporter already runs on its own worker thread.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from evlog._version import __version__
from evlog.exporters.http import HttpClient, HttpOutcome

__all__ = ["McpClient", "McpReply", "parse_sse"]

ACCEPT = "application/json, text/event-stream"


@attrs.frozen
class McpReply:
    """The answer to one JSON-RPC request.

    ``outcome`` is the HTTP exchange (a connection error or non-2xx status is there); ``result`` or
    ``error`` is the JSON-RPC response when one was read; ``problem`` says why none could be read.
    """

    outcome: HttpOutcome
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    problem: str | None = None


def parse_sse(text: str) -> Iterator[str]:
    """The ``data`` of each event in a ``text/event-stream`` body (multi-line data joined with newlines)."""
    lines: list[str] = []
    for raw in text.splitlines():
        if raw == "":
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if raw.startswith(":"):
            continue
        field, _, value = raw.partition(":")
        if field == "data":
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)


def _messages(outcome: HttpOutcome) -> list[Any]:
    ctype = ""
    for key, value in outcome.headers.items():
        if key.lower() == "content-type":
            ctype = value.lower()
    text = outcome.text
    if "text/event-stream" in ctype:
        found = []
        for data in parse_sse(text):
            try:
                found.append(json.loads(data))
            except ValueError:
                continue
        return found
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        return []
    if isinstance(parsed, list):  # a JSON-RPC batch
        return parsed
    return [parsed] if parsed is not None else []


def _answered(headers: Mapping[str, str], so_far: bytes, request_id: int) -> bool:
    """True once an SSE stream holds the response to ``request_id``: the server may keep the stream open."""
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if "text/event-stream" not in ctype.lower():
        return False
    # An event cut off mid-way does not parse as JSON, so only complete answers count.
    for data in parse_sse(so_far.decode("utf-8", errors="replace")):
        try:
            message = json.loads(data)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == request_id:
            return True
    return False


class McpClient:
    """One MCP session with one server endpoint; safe to call from several threads (calls are serialised)."""

    def __init__(
        self,
        http: HttpClient,
        url: str,
        *,
        headers: Mapping[str, str],
        protocol_version: str,
    ) -> None:
        self._http = http
        self._url = url
        self._headers = {"Accept": ACCEPT, **headers}
        self._wanted_version = protocol_version
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._initialized = False
        #: Sessions started so far (a growing count shows a server that keeps losing them).
        self.sessions_started = 0

    def _session_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    def _rpc(self, method: str, params: Mapping[str, Any], timeout: float) -> McpReply:
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": dict(params)}
        outcome = self._http.post_json(
            self._url,
            body,
            headers=self._session_headers(),
            timeout=timeout,
            stop_when=lambda headers, so_far: _answered(headers, so_far, request_id),
        )
        if not outcome.ok:
            return McpReply(outcome)
        for message in _messages(outcome):
            if isinstance(message, dict) and message.get("id") == request_id:
                if isinstance(message.get("error"), dict):
                    return McpReply(outcome, error=message["error"])
                if isinstance(message.get("result"), dict):
                    return McpReply(outcome, result=message["result"])
        return McpReply(outcome, problem=f"no JSON-RPC response to request {request_id} in the reply")

    def _start(self, timeout: float) -> McpReply | None:
        """Open a session; None when ready, else the reply that explains why not."""
        self.session_id = None
        self.protocol_version = None
        self._initialized = False
        params = {
            "protocolVersion": self._wanted_version,
            "capabilities": {},
            "clientInfo": {"name": "evlog", "version": __version__},
        }
        reply = self._rpc("initialize", params, timeout)
        if reply.result is None:
            return reply
        for key, value in reply.outcome.headers.items():
            if key.lower() == "mcp-session-id" and value:
                self.session_id = value
        version = reply.result.get("protocolVersion")
        self.protocol_version = version if isinstance(version, str) and version else self._wanted_version
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        outcome = self._http.post_json(self._url, note, headers=self._session_headers(), timeout=timeout)
        if not outcome.ok:
            return McpReply(outcome)
        self._initialized = True
        self.sessions_started += 1
        return None

    def call_tool(self, name: str, arguments: Mapping[str, Any], *, timeout: float) -> McpReply:
        """``tools/call``; opens a session first if needed, and once more if the server lost it (404)."""
        with self._lock:
            if not self._initialized:
                failed = self._start(timeout)
                if failed is not None:
                    return failed
            params = {"name": name, "arguments": dict(arguments)}
            reply = self._rpc("tools/call", params, timeout)
            if reply.outcome.status == 404 and self.session_id is not None:
                failed = self._start(timeout)
                if failed is not None:
                    return failed
                reply = self._rpc("tools/call", params, timeout)
            return reply

    def close(self, timeout: float) -> None:
        """End the session on the server (``DELETE``); a server that does not allow it answers 405, also fine."""
        with self._lock:
            session, self.session_id = self.session_id, None
            self._initialized = False
            if session is not None and timeout > 0:
                headers = {**self._session_headers(), "Mcp-Session-Id": session}
                self._http.request("DELETE", self._url, headers=headers, timeout=timeout)

    def reset_after_fork(self) -> None:
        # The session belongs to the parent process: forget it without ending it.
        self._lock = threading.Lock()
        self.session_id = None
        self.protocol_version = None
        self._initialized = False
