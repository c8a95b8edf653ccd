"""Flushing from async code and from short-lived handlers: ``aflush``, ``ashutdown``, ``flush_after``.

``flush()`` blocks its caller until delivery is done or its timeout ends, which in a coroutine would stall the
whole event loop (every other request with it) for as long as a backend hangs. The async forms wait in a worker
thread instead. Serverless runtimes freeze or end the process as soon as a handler returns, before evlog's
threads had their turn: ``flush_after`` delivers within a budget before the handler's result goes back.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from evlog._api import flush, shutdown

__all__ = ["aflush", "ashutdown", "flush_after"]

F = TypeVar("F", bound=Callable[..., Any])


async def aflush(timeout: float = 5.0) -> bool:
    """``flush(timeout)`` without blocking the event loop: other coroutines run while evlog delivers."""
    return await asyncio.to_thread(flush, timeout)


async def ashutdown(timeout: float | None = None) -> bool:
    """``shutdown(timeout)`` without blocking the event loop."""
    return await asyncio.to_thread(shutdown, timeout)


def flush_after(func: F | None = None, *, timeout: float = 2.0) -> Any:
    """Decorate a request handler (sync or ``async def``) so what it logged is delivered before it returns.

    ``@evlog.flush_after`` or ``@evlog.flush_after(timeout=1.0)``: after the handler (also when it raises),
    evlog flushes for at most ``timeout`` seconds; the handler's result or exception is passed on unchanged.
    """

    def decorate(handler: F) -> F:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(*args, **kwargs)
                finally:
                    await aflush(timeout)

            return cast(F, async_wrapper)

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                flush(timeout)

        return cast(F, wrapper)

    if func is not None:
        return decorate(func)
    return decorate
