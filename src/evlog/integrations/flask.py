"""Flask: each request's context bound (route template included), the exceptions Flask catches recorded.

    from evlog.integrations.flask import init_app
    init_app(app, user=lambda request: evlog.User(id=request.headers["X-User-Id"]), request_events=True)

Flask catches a view's exception to answer 500, so no hook ever sees it; it announces it on the
``got_request_exception`` signal, which is where it is recorded, on the request's thread, inside its context.
The context is bound from ``request_started`` (before ``url_value_preprocessor`` and ``before_request``
functions, so their failures carry it too) to ``request_tearing_down`` (after the ``teardown_request``
functions). Records Flask logs itself (``app.logger``) carry it as well when the logging bridge is attached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response, g, request
from flask.signals import got_request_exception, request_finished, request_started, request_tearing_down

from evlog import _context
from evlog._event import User
from evlog._guard import guarded, internal_logger
from evlog.integrations._request import RequestInfo, call_user, record_exception, record_request, request_id

__all__ = ["init_app"]

_G_KEY = "_evlog_request"


class _Request:
    """One request's bound context, kept on ``flask.g`` from its start to its teardown."""

    def __init__(self, info: RequestInfo) -> None:
        self.info = info
        self.block = _context.context(**info.fields())
        self.block.__enter__()


class _Integration:
    def __init__(
        self, user: Callable[[Request], User | None] | None, request_events: bool, request_id_header: str
    ) -> None:
        self.user = user
        self.request_events = request_events
        self.request_id_header = request_id_header

    def started(self, sender: Flask, **_: Any) -> None:
        with _never_raises("bind the request's context"):
            rid = request.environ.get("evlog.request_id") or request_id(request.headers.get(self.request_id_header))
            info = RequestInfo(method=request.method, path=request.path, request_id=rid, user=None)
            if request.url_rule is not None:  # None when no route matched (the 404 to come)
                info.data["route"] = request.url_rule.rule
            info.user = call_user(self.user, request)
            setattr(g, _G_KEY, _Request(info))

    def exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        record_exception(exception, "flask")

    def finished(self, sender: Flask, response: Response, **_: Any) -> None:
        bound: _Request | None = g.get(_G_KEY)
        if bound is not None:
            bound.info.status = response.status_code

    def tearing_down(self, sender: Flask, **_: Any) -> None:
        bound: _Request | None = g.pop(_G_KEY, None)
        if bound is None:
            return
        with _never_raises("end the request's context"):
            if self.request_events:
                record_request(bound.info, bound.info.status)
            bound.block.__exit__(None, None, None)


@contextlib.contextmanager
def _never_raises(what: str) -> Any:
    """Signal receivers run inside Flask's request handling: evlog's failure must not become the request's."""
    try:
        yield
    except Exception:
        with guarded(), contextlib.suppress(Exception):
            internal_logger.warning("evlog: could not %s", what, exc_info=True)


def init_app(
    app: Flask,
    *,
    user: Callable[[Request], User | None] | None = None,
    request_events: bool = False,
    request_id_header: str = "X-Request-ID",
) -> None:
    """Bind ``request_id``, ``method``, ``path``, ``route`` and the user for each request of ``app``.

    ``user(request)`` returns the request's ``evlog.User`` or None (a callback that raises is logged on the
    ``evlog`` logger; the request goes on without a user). The request id is the ``request_id_header`` the
    client sent, else a new uuid4 (or the id ``EvlogMiddleware`` already gave the request when it wraps the
    app). Exceptions Flask turns into a 500 are recorded once, with the request's context.
    ``request_events=True`` adds one ``http.request`` event per request (``status``, ``duration_ms``).
    """
    if "evlog" in app.extensions:  # a second call would bind and record everything twice
        raise RuntimeError("evlog.integrations.flask.init_app() was already called for this app")
    integration = _Integration(user, request_events, request_id_header)
    # Strong references: blinker would otherwise drop these bound methods with nothing else holding them.
    request_started.connect(integration.started, app, weak=False)
    got_request_exception.connect(integration.exception, app, weak=False)
    request_finished.connect(integration.finished, app, weak=False)
    request_tearing_down.connect(integration.tearing_down, app, weak=False)
    app.extensions["evlog"] = integration
