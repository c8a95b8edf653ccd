"""ASGI middleware: each request runs with its context bound, its unhandled exception recorded, and optionally one
``http.request`` event.

    from evlog.integrations.asgi import EvlogMiddleware
    app = EvlogMiddleware(app, request_events=True)      # or Starlette: app.add_middleware(EvlogMiddleware)

The request is awaited inside ``async with`` the context block, in the server's task for that request, so
everything the app does there (and every task or thread it starts, which copy the context) carries it, and the
block's end undoes whatever was bound inside it. Routing happens inside the app, so the route template is not
known when the block starts: when the app's router leaves the matched route in ``scope["route"]`` (Starlette,
FastAPI), the exception and ``http.request`` events get it as ``route``; fields an integration learns later
still (``scope["evlog.late"]``, set by the FastAPI integration) are added to them the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from evlog import _api, _context
from evlog._event import User
from evlog.integrations._request import RequestInfo, call_user, record_exception, record_request, request_id

__all__ = ["EvlogMiddleware", "late_fields"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where an integration leaves context fields it learns during the request (e.g. FastAPI's user, after routing).
LATE_KEY = "evlog.late"


def late_fields(scope: Scope) -> dict[str, Any]:
    """The fields learnt after the block started: the route template, and what an integration left in the scope."""
    fields: dict[str, Any] = dict(scope.get(LATE_KEY) or {})
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str) and "route" not in fields.get("data", {}):
        fields["data"] = {**fields.get("data", {}), "route": route}
    return fields


def _delivering_before_shutdown_completes(send: Send) -> Send:
    """The server's lifespan ``send``, which delivers what is queued before it reports the shutdown complete.

    ASGI servers run the lifespan shutdown on a graceful stop, and some then end the process by raising the
    signal again (uvicorn re-raises SIGTERM), which skips ``atexit``: this is the last moment to deliver.
    """

    async def wrapped(message: Message) -> None:
        if message.get("type") == "lifespan.shutdown.complete":
            # A flush, not a shutdown: an app can go through its lifespan more than once (a test client).
            await asyncio.to_thread(_api.flush, _shutdown_timeout())
        await send(message)

    return wrapped


def _shutdown_timeout() -> float:
    client = _api.current_client()
    return client.config.shutdown_timeout if client is not None else 0.0


class EvlogMiddleware:
    """Wrap an ASGI app: binds ``request_id``, ``method``, ``path`` (as ``data``) and the user for each request.

    HTTP and WebSocket connections are bound; at the lifespan shutdown (a graceful stop), what is queued is
    delivered (a flush within ``shutdown_timeout``) before the server is told the shutdown is complete.
    ``user(scope)`` returns the request's ``evlog.User`` or None (a callback that raises is logged on the
    ``evlog`` logger and the request goes on without a user). The request id is the ``request_id_header`` the
    client sent, else a new uuid4; it is also put in ``scope["evlog.request_id"]``. An exception leaving the app
    is recorded with ``capture_exception`` and raised again, unchanged. ``request_events=True`` adds one
    ``http.request`` event per HTTP request (``status``, ``duration_ms``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user: Callable[[Scope], User | None] | None = None,
        request_events: bool = False,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.user = user
        self.request_events = request_events
        self._header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _delivering_before_shutdown_completes(send))
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope.get("headers", ()) if name == self._header), None)
        rid = request_id(sent.decode("latin-1") if sent is not None else None)
        scope["evlog.request_id"] = rid
        info = RequestInfo(
            method=scope.get("method", "WEBSOCKET"),
            path=scope.get("path", ""),
            request_id=rid,
            user=call_user(self.user, scope),
        )

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = int(message["status"])
            await send(message)

        async with _context.context(**info.fields()):
            try:
                await self.app(scope, receive, send_noting_status)
            except BaseException as exc:
                with _context.context(**late_fields(scope)):
                    if isinstance(exc, Exception):  # not cancellation: a way of stopping, not a failure
                        record_exception(exc, "asgi")
                    if self.request_events and scope["type"] == "http":
                        record_request(info, 500 if info.status is None else info.status, failed=True)
                raise
            if self.request_events and scope["type"] == "http":
                with _context.context(**late_fields(scope)):
                    record_request(info, info.status)
