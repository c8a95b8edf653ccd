"""Django: a middleware binding each request's context, and an app that configures evlog from ``settings.EVLOG``.

    INSTALLED_APPS = [..., "evlog.integrations.django"]          # configure(**settings.EVLOG) at start-up
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "evlog.integrations.django.EvlogMiddleware"]  # after auth, so request.user is there
    EVLOG = {"exporters": ["console"]}
    EVLOG_USER = "myapp.evlog_user"     # optional: request -> evlog.User | None (default: request.user's pk)
    EVLOG_REQUEST_EVENTS = True         # optional: one http.request event per request

Django turns a view's exception into a 500 response, so no hook sees it: the middleware records it from
``process_exception``, inside the request's context. The route pattern is only known once the URL is
resolved, so it is bound from ``process_view``; the request id, method, path and user from the start.
The middleware is synchronous; under ASGI, Django runs it in its thread-sensitive executor as it does any
synchronous middleware.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from evlog import _context
from evlog._event import User
from evlog.integrations._request import RequestInfo, call_user, record_exception, record_request, request_id

__all__ = ["EvlogMiddleware", "default_user"]

UserCallback = Callable[[HttpRequest], User | None]


def default_user(request: HttpRequest) -> User | None:
    """``request.user``'s primary key when authenticated (needs ``AuthenticationMiddleware`` before evlog's)."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return User(id=str(user.pk))


def _load(value: str | UserCallback | None) -> UserCallback:
    if value is None:
        return default_user
    if callable(value):
        return value
    module, _, name = value.replace(":", ".").rpartition(".")
    found: UserCallback = getattr(importlib.import_module(module), name)
    return found


class EvlogMiddleware:
    """Bind ``request_id``, ``method``, ``path``, ``route`` and the user for each request; record its exception.

    Settings: ``EVLOG_USER`` (a callable or its dotted path; default ``default_user``), ``EVLOG_REQUEST_EVENTS``
    (one ``http.request`` event per request, with ``status`` and ``duration_ms``), ``EVLOG_REQUEST_ID_HEADER``
    (default ``X-Request-ID``; without one the request gets a new uuid4, also set as ``request.evlog_request_id``).
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.user = _load(getattr(settings, "EVLOG_USER", None))
        self.request_events = bool(getattr(settings, "EVLOG_REQUEST_EVENTS", False))
        self.header = getattr(settings, "EVLOG_REQUEST_ID_HEADER", "X-Request-ID")

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        rid = request_id(request.headers.get(self.header))
        request.evlog_request_id = rid  # type: ignore[attr-defined]
        info = RequestInfo(method=request.method or "GET", path=request.path, request_id=rid, user=None)
        info.user = call_user(self.user, request)
        with _context.context(**info.fields()):
            response = self.get_response(request)  # Django's handler turns exceptions into responses
            if self.request_events:
                record_request(info, response.status_code)
        return response

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        match = request.resolver_match
        if match is not None and match.route:
            # Bound inside __call__'s block, which undoes it at the request's end.
            _context.bind(data={"route": "/" + match.route.lstrip("^")})

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        record_exception(exception, "django")  # returns None: Django goes on answering as it would
