"""FastAPI: the ASGI middleware, plus the route template and the user bound once routing is done.

    app = FastAPI()
    init_app(app, user=lambda request: evlog.User(id=request.headers["X-User-Id"]), request_events=True)

Call ``init_app`` right after creating the app, before declaring routes or including routers. The middleware
binds the request id, method and path as soon as the request arrives; the route template and the user are
only known once the request has passed every middleware and the router (``request.user`` of an
authentication middleware, a session...), so an app-wide dependency binds them then, in the request's task,
before the endpoint runs (a sync endpoint's thread copies the context). They reach the exception and
``http.request`` events through the scope, since those are recorded by the middleware, outside the endpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute

from evlog import _context
from evlog._event import User
from evlog._guard import guarded, internal_logger
from evlog.integrations._request import call_user
from evlog.integrations.asgi import LATE_KEY, EvlogMiddleware

__all__ = ["init_app"]


def init_app(
    app: FastAPI,
    *,
    user: Callable[[Request], User | None] | None = None,
    request_events: bool = False,
    request_id_header: str = "X-Request-ID",
) -> None:
    """Bind ``request_id``, ``method``, ``path``, ``route`` and the user for each request of ``app``.

    ``user(request)`` returns the request's ``evlog.User`` or None; it runs after every middleware, so
    ``request.user`` or ``request.session`` are there (a callback that raises is logged on the ``evlog``
    logger; the request goes on without a user). Unhandled exceptions are recorded once, with the request's
    context; ``request_events=True`` adds one ``http.request`` event per request (``status``, ``duration_ms``).
    """

    async def bind_route_and_user(request: Request) -> None:
        fields: dict[str, Any] = {}
        route = getattr(request.scope.get("route"), "path", None)
        if isinstance(route, str):
            fields["data"] = {"route": route}
        found = call_user(user, request)
        if found is not None:
            fields["user"] = found
        if fields:
            request.scope[LATE_KEY] = fields
            _context.bind(**fields)  # undone when the middleware's block for this request ends

    declared = [route.path for route in app.routes if isinstance(route, APIRoute)]
    if declared:
        with guarded(), contextlib.suppress(Exception):
            internal_logger.warning(
                "evlog: init_app(app) was called after routes were declared (%s...): their events carry no route "
                "template or user until the exception and http.request events; call it right after FastAPI()",
                declared[0],
            )
    app.router.dependencies.append(Depends(bind_route_and_user))
    app.add_middleware(
        EvlogMiddleware,  # type: ignore[arg-type]
        request_events=request_events,
        request_id_header=request_id_header,
    )
