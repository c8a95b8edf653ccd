"""WSGI middleware: each request runs with its context bound, its unhandled exception recorded, and optionally one
``http.request`` event.

    from evlog.integrations.wsgi import EvlogMiddleware
    app = EvlogMiddleware(app, user=lambda environ: evlog.User(id=environ["REMOTE_USER"]), request_events=True)

A WSGI response is produced in two phases: the call, then the server iterating the body (a generator body runs
its code only then). Both run in one copy of the server thread's context (``contextvars.copy_context``), so the
body sees the request's context too, and nothing bound during the request, by us or by the app's own
``evlog.bind``, can leak into the next request that thread serves, even from a server that never calls
``close()``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from evlog import _context
from evlog._event import User
from evlog.integrations._request import RequestInfo, call_user, record_exception, record_request, request_id

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["EvlogMiddleware"]

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class EvlogMiddleware:
    """Wrap a WSGI app: binds ``request_id``, ``method``, ``path`` (as ``data``) and the user for each request.

    ``user(environ)`` returns the request's ``evlog.User`` or None (a callback that raises is logged on the
    ``evlog`` logger and the request goes on without a user). The request id is the ``request_id_header``
    the client sent, else a new uuid4; it is also put in ``environ["evlog.request_id"]``. An exception leaving
    the app (or its body) is recorded with ``capture_exception`` and raised again, unchanged.
    ``request_events=True`` adds one ``http.request`` event per request (``status``, ``duration_ms``).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        user: Callable[[WSGIEnvironment], User | None] | None = None,
        request_events: bool = False,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.user = user
        self.request_events = request_events
        self._header_key = "HTTP_" + request_id_header.upper().replace("-", "_")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        ctx = contextvars.copy_context()
        return ctx.run(self._start, ctx, environ, start_response)

    def _start(
        self, ctx: contextvars.Context, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        rid = request_id(environ.get(self._header_key))
        environ["evlog.request_id"] = rid
        info = RequestInfo(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            request_id=rid,
            user=call_user(self.user, environ),
        )
        # Entered for good in this copied context: it ends with the request, so there is nothing to restore.
        _context.context(**info.fields()).__enter__()

        def start(status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None, /) -> Any:
            try:
                info.status = int(status.split(None, 1)[0])
            except ValueError:
                info.status = None
            # Passed on only when given: some servers' start_response takes two arguments.
            return start_response(status, headers) if exc_info is None else start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException as exc:
            self._failed(info, exc)
            raise
        return _Body(ctx, body, self, info)

    def _failed(self, info: RequestInfo, exc: BaseException) -> None:
        if isinstance(exc, Exception):  # not GeneratorExit, KeyboardInterrupt...: those are ways of stopping
            record_exception(exc, "wsgi")
        if self.request_events:
            record_request(info, 500 if info.status is None else info.status, failed=True)

    def _done(self, info: RequestInfo) -> None:
        if self.request_events:
            record_request(info, info.status)


class _Body:
    """The app's response body, iterated and closed in the request's context."""

    def __init__(self, ctx: contextvars.Context, body: Iterable[bytes], owner: EvlogMiddleware, info: RequestInfo):
        self._ctx = ctx
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._owner = owner
        self._info = info
        self._failed = False
        self._closed = False

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._ctx.run(iter, self._body)
        try:
            return self._ctx.run(next, self._iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            self._failed = True
            self._ctx.run(self._owner._failed, self._info, exc)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._body, "close", None)
        try:
            if close is not None:
                self._ctx.run(close)
        except BaseException as exc:
            self._failed = True
            self._ctx.run(self._owner._failed, self._info, exc)
            raise
        finally:
            if not self._failed:
                self._ctx.run(self._owner._done, self._info)
