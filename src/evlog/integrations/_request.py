"""What every web integration does around one request, whatever the framework.

The framework modules only translate their request and response into these calls, so the event shapes are the
same everywhere: the bound ``data`` keys ``request_id``, ``method``, ``path`` (and ``route``, the route template,
where the framework has matched one), the ``http.request`` event, and the exception event's ``mechanism``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from evlog._event import User
from evlog._excepthook import _recorded, capture_exception
from evlog._guard import guarded, internal_logger
from evlog._intake import log_event

__all__ = ["RequestInfo", "call_user", "record_exception", "record_request", "request_id"]

R = TypeVar("R")
#: Request ids longer than this from a client are cut: the header is the client's, the event is ours.
_MAX_ID = 200


def request_id(header_value: str | None) -> str:
    """The client's request id when it sent one, else a new uuid4 (so the id of every request can be searched)."""
    if header_value:
        value = header_value.strip()[:_MAX_ID]
        if value:
            return value
    return str(uuid.uuid4())


def call_user(callback: Callable[[R], User | None] | None, request: R) -> User | None:
    """The app's user callback for this request; a failing or wrong callback costs the user, never the request."""
    if callback is None:
        return None
    try:
        user = callback(request)
    except Exception:
        with guarded(), contextlib.suppress(Exception):
            internal_logger.warning(
                "evlog: the user callback %r failed; request logged without a user", callback, exc_info=True
            )
        return None
    if user is not None and not isinstance(user, User):
        with guarded(), contextlib.suppress(Exception):
            internal_logger.warning(
                "evlog: the user callback %r returned %s, not an evlog.User or None; request logged without a user",
                callback,
                type(user).__name__,
            )
        return None
    return user


class RequestInfo:
    """One request's bound fields and its clock, from its start to the ``http.request`` event."""

    __slots__ = ("data", "started", "status", "user")

    def __init__(self, *, method: str, path: str, request_id: str, user: User | None) -> None:
        self.data: dict[str, Any] = {"request_id": request_id, "method": method, "path": path}
        self.user = user
        self.started = time.perf_counter()
        self.status: int | None = None

    def fields(self) -> dict[str, Any]:
        """The keyword arguments for ``_context.context`` / ``bind``."""
        return {"data": self.data, "user": self.user} if self.user is not None else {"data": self.data}


def record_exception(exc: BaseException, mechanism: str) -> None:
    """Record an exception the request raised, once (another layer may have recorded it already); never raises."""
    if _recorded(exc):
        return
    try:
        capture_exception(exc, data={"mechanism": mechanism, "handled": False})
    except Exception:
        with guarded(), contextlib.suppress(Exception):
            internal_logger.warning("evlog: could not record the request's %s", type(exc).__name__, exc_info=True)


def record_request(info: RequestInfo, status: int | None, *, failed: bool = False) -> None:
    """The ``http.request`` event: status and duration; level error for a 5xx or a request that raised (its body
    may have failed after a 200 was sent). Never raises."""
    duration_ms = round((time.perf_counter() - info.started) * 1000, 3)
    level = "error" if failed or status is None or status >= 500 else "info"
    try:
        log_event("http.request", level=level, category="http", data={"status": status, "duration_ms": duration_ms})
    except Exception:
        with guarded(), contextlib.suppress(Exception):
            internal_logger.warning("evlog: could not record the http.request event", exc_info=True)
