"""A scripted MCP Streamable-HTTP server on loopback, for what the SDK-built seller cannot show.

It follows the MCP 2025-06-18 transport rules the exporter relies on: ``initialize`` issues a session id,
``notifications/initialized`` gets 202, later requests must carry the session id (unknown ones get 404),
``DELETE`` ends a session. ``tools/call`` answers with ``tool_result`` (a callable of the arguments that
returns the MCP tool result), as plain JSON or, with ``sse=True``, as an SSE stream that carries a
notification before the response. ``expire_sessions()`` forgets every session, as a restarted server would.
Slow and reset connections come from the underlying ``RecordingServer``'s ``script``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

from support.loopback import Fault, RecordingServer, Reply, Request

ToolResult = Callable[[dict[str, Any]], dict[str, Any]]


def success_result(arguments: dict[str, Any]) -> dict[str, Any]:
    """What a seller answers when every event was queued."""
    count = len(arguments.get("events", []))
    payload = {"events_received": count, "events_processed": count, "match_quality": 0.8, "status": "completed"}
    return {"content": [{"type": "text", "text": json.dumps(payload)}], "structuredContent": payload, "isError": False}


class McpFake:
    def __init__(
        self,
        tool_result: ToolResult = success_result,
        *,
        sse: bool = False,
        hold_open: bool = False,
        chunked: bool = False,
    ) -> None:
        self.chunked = chunked
        self.tool_result = tool_result
        self.sse = sse
        #: With ``sse``: keep each stream open after the answer, as the spec allows a server to.
        self.hold_open = hold_open
        self.sessions: set[str] = set()
        self.deleted: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = RecordingServer(self.handle)

    def __enter__(self) -> McpFake:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return f"{self.server.url}/mcp"

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()

    def calls(self) -> list[Request]:
        """The ``tools/call`` requests received, in order."""
        return [
            r
            for r in list(self.server.requests)
            if r.method == "POST" and (r.json() or {}).get("method") == "tools/call"
        ]

    def _reply(self, message: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
        if not self.sse:
            return Reply(200, body=message, headers=headers or {})
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
        body = f": keep-alive\n\nevent: message\ndata: {json.dumps(note)}\n\nid: 1\nevent: message\n"
        text = json.dumps(message, indent=1)  # several lines: each becomes its own data: line
        body += "".join(f"data: {line}\n" for line in text.splitlines()) + "\n"
        return Reply(
            200,
            body=body,
            headers={
                "Content-Type": "text/event-stream",
                **({"Transfer-Encoding": "chunked"} if self.chunked else {}),
                **(headers or {}),
            },
            hold_open=self.hold_open,
        )

    def handle(self, request: Request) -> Reply | Fault:
        session = request.header("Mcp-Session-Id")
        if request.method == "DELETE":
            with self._lock:
                self.sessions.discard(session or "")
                self.deleted.append(session or "")
            return Reply(200, body=b"")
        message = request.json() or {}
        method = message.get("method")
        if method == "initialize":
            new = f"session-{next(self._ids)}"
            with self._lock:
                self.sessions.add(new)
            result = {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "mcp-fake", "version": "1"},
            }
            return self._reply({"jsonrpc": "2.0", "id": message["id"], "result": result}, {"Mcp-Session-Id": new})
        with self._lock:
            known = session in self.sessions
        if not known:
            error = {"code": -32600, "message": "Session not found" if session else "Missing session ID"}
            return Reply(404 if session else 400, body={"jsonrpc": "2.0", "id": None, "error": error})
        if method == "notifications/initialized":
            return Reply(202, body=b"")
        if method == "tools/call":
            result = self.tool_result(message["params"]["arguments"])
            return self._reply({"jsonrpc": "2.0", "id": message["id"], "result": result})
        error = {"code": -32601, "message": f"unknown method {method}"}
        return Reply(200, body={"jsonrpc": "2.0", "id": message.get("id"), "error": error})
