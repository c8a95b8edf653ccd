"""Exceptions as events: the uncaught-exception hooks (sys, threading, asyncio) and ``capture_exception``.

Each hook records the event and then calls the hook that was there before, so the app's own behaviour
(tracebacks on stderr, other tools' hooks) is unchanged. A hook never raises into the interpreter's machinery:
whatever goes wrong while recording is swallowed, and the previous hook still runs.

``uninstall`` puts the previous hook back when ours is still the current one. When some other tool has
chained itself on top of ours since, ours stays in that chain but becomes a pass-through, because removing
it would also remove the other tool's hook.

An exception is recorded once: the ones ``capture_exception`` or ``capturing_exceptions`` already recorded
are marked, and the hooks and ``capturing_exceptions`` skip marked exceptions (an uncaught one still makes
the main-thread hook report the crash and flush).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from evlog._errors import InvalidEventError
from evlog._event import Level, User, Value
from evlog._exceptions_info import exception_info
from evlog._guard import guarded, internal_logger
from evlog._intake import active, log_event

if TYPE_CHECKING:
    import asyncio
    import datetime as _dt

__all__ = [
    "capture_exception",
    "capturing_exceptions",
    "install",
    "install_asyncio_handler",
    "uninstall",
]

F = TypeVar("F", bound=Callable[..., Any])
ExcTypes = tuple[type[BaseException], ...]

#: Not failures but ways of stopping: not reported by the hooks unless ``install(ignore=...)`` says otherwise.
DEFAULT_IGNORE: ExcTypes = (KeyboardInterrupt, SystemExit)
_MARK = "__evlog_recorded__"
_REASON_MAX = 500


# --- recording -----------------------------------------------------------------------------------------------


def _mark(exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # a few C-level exceptions refuse new attributes
        setattr(exc, _MARK, True)


def _recorded(exc: BaseException) -> bool:
    try:
        return getattr(exc, _MARK, False) is True
    except Exception:
        return False


def capture_exception(
    exc: BaseException | None = None,
    *,
    name: str = "exception",
    level: Level | str = "error",
    category: str | None = "exception",
    labels: Iterable[str] | None = None,
    message: str | None = None,
    data: Mapping[str, Any] | None = None,
    timestamp: _dt.datetime | None = None,
    event_id: str | None = None,
    user: User | None = None,
    session_id: str | None = None,
    value: Value | None = None,
    capture_locals: bool = False,
) -> str:
    """Record ``exc``, or the exception being handled, as an event; returns the event's id.

    Defaults follow the session server's exception events: name ``exception``, level ``error``, category
    ``exception``, labels ``["exception", "<TypeName>"]``, message the exception's text (its type name when
    the text is empty). Every field can be overridden; the other arguments mean what they mean in
    ``log_event``. Raises ``InvalidEventError`` when there is no exception to record (called outside an
    ``except`` block without one) or ``exc`` is not an exception instance.
    """
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise InvalidEventError(
                "capture_exception() found no exception to record: call it inside an `except` block, "
                "or pass the exception, e.g. capture_exception(exc)"
            )
    elif not isinstance(exc, BaseException):
        what = f"the class {exc.__name__}" if isinstance(exc, type) else type(exc).__name__
        raise InvalidEventError(
            f"capture_exception() needs an exception instance, got {what} {exc!r:.60}"
            " (pass the caught exception object, e.g. `except ValueError as exc: capture_exception(exc)`)"
        )
    info = exception_info(exc, capture_locals=capture_locals)
    if labels is None:
        labels = ("exception", type(exc).__name__)
    if message is None:
        message = info.exception_msg or type(exc).__name__
    event_id = event_id or str(uuid.uuid4())
    log_event(
        name,
        level=level,
        category=category,
        labels=labels,
        message=message,
        data=data,
        timestamp=timestamp,
        event_id=event_id,
        user=user,
        session_id=session_id,
        value=value,
        exception=info,
    )
    _mark(exc)
    return event_id


def _record_uncaught(exc: BaseException, data: dict[str, Any]) -> None:
    """Record an exception nobody caught (level critical). Runs under the guard; the caller swallows errors."""
    if _recorded(exc):
        return
    with guarded():
        capture_exception(exc, level=Level.CRITICAL, data=data, capture_locals=_state.capture_locals)


def _crash_reason(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    reason = f"uncaught {type(exc).__name__}" + (f": {text}" if text else "")
    return reason[:_REASON_MAX]


def _interactive() -> bool:
    """In a REPL (or ``python -i``) an uncaught exception does not end the process."""
    return hasattr(sys, "ps1") or bool(sys.flags.interactive)


# --- the hooks -----------------------------------------------------------------------------------------------


class _SysHook:
    """``sys.excepthook``: the main thread is about to die, so record, report the crash, and flush first."""

    def __init__(self, previous: Callable[..., Any] | None) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.active:
            with contextlib.suppress(BaseException):  # a hook must never raise into the interpreter
                self._record(exc_type, exc, tb)
        previous: Callable[..., Any] = self.previous if self.previous is not None else sys.__excepthook__
        previous(exc_type, exc, tb)

    @staticmethod
    def _record(exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            exc = exc_type()
        if exc.__traceback__ is None and tb is not None:
            exc = exc.with_traceback(tb)
        if isinstance(exc, _state.ignore):
            return
        data = {"mechanism": "sys.excepthook", "handled": False, "thread": threading.current_thread().name}
        _record_uncaught(exc, data)
        sink = active()
        if sink is not None:
            # In a REPL the process goes on: deliver, but do not report a crash or shorten the exit.
            sink.on_uncaught(None if _interactive() else _crash_reason(exc))


class _ThreadHook:
    """``threading.excepthook``: only that thread dies; delivery happens as usual (at the latest at exit)."""

    def __init__(self, previous: Callable[[Any], Any] | None) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, args: Any) -> None:
        if self.active:
            with contextlib.suppress(BaseException):  # a hook must never raise into the interpreter
                self._record(args)
        previous: Callable[[Any], Any] = self.previous if self.previous is not None else threading.__excepthook__
        previous(args)

    @staticmethod
    def _record(args: Any) -> None:
        exc = args.exc_value
        thread = args.thread
        thread_name = getattr(thread, "name", None)
        if exc is None or isinstance(exc, _state.ignore):
            return
        if thread_name and thread_name.startswith("evlog-"):
            return  # evlog's own threads report their failures through the evlog logger
        data = {"mechanism": "threading.excepthook", "handled": False, "thread": thread_name}
        _record_uncaught(exc, data)


class _LoopHandler:
    """An asyncio loop's exception handler: exceptions of tasks nobody awaited, failing callbacks."""

    def __init__(self, previous: Callable[..., Any] | None) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if self.active:
            with contextlib.suppress(BaseException):  # a hook must never raise into the event loop
                self._record(context)
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    @staticmethod
    def _record(context: Mapping[str, Any]) -> None:
        exc = context.get("exception")
        if not isinstance(exc, BaseException) or isinstance(exc, _state.ignore):
            return
        data: dict[str, Any] = {"mechanism": "asyncio", "handled": False}
        if context.get("message"):
            data["asyncio_message"] = str(context["message"])
        task = context.get("task") or context.get("future")
        get_name = getattr(task, "get_name", None)
        if callable(get_name):
            data["task"] = str(get_name())
        _record_uncaught(exc, data)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.ignore: ExcTypes = DEFAULT_IGNORE
        self.capture_locals = False
        self.sys_hook: _SysHook | None = None
        self.thread_hook: _ThreadHook | None = None
        self.loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopHandler] = weakref.WeakKeyDictionary()


_state = _State()


def install(
    *,
    ignore: Iterable[type[BaseException]] | None = None,
    capture_locals: bool | None = None,
    asyncio_loop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Record uncaught exceptions: main thread, other threads, and ``asyncio_loop`` when given.

    ``configure(capture_exceptions=True)`` calls this. Calling it again does not add a second hook: it only
    changes the settings given (``None`` leaves a setting as it is). ``ignore`` lists exception types the
    hooks let pass unrecorded (default: ``KeyboardInterrupt``, ``SystemExit``; ``()`` records everything).
    ``capture_locals=True`` adds local variable values to stack traces; they can hold secrets, so it is off
    by default.
    """
    with _state.lock:
        if ignore is not None:
            types = tuple(ignore)
            for item in types:
                if not (isinstance(item, type) and issubclass(item, BaseException)):
                    raise TypeError(f"ignore must hold exception classes, got {item!r:.60}")
            _state.ignore = types
        if capture_locals is not None:
            _state.capture_locals = bool(capture_locals)
        # Ours may have been replaced since (an app setting sys.excepthook after `import evlog` installed the
        # hooks from the environment): install again on top, and let the replaced one pass through.
        if _state.sys_hook is None or sys.excepthook is not _state.sys_hook:
            if _state.sys_hook is not None:
                _state.sys_hook.active = False
            _state.sys_hook = _SysHook(sys.excepthook)
            sys.excepthook = _state.sys_hook
        if _state.thread_hook is None or threading.excepthook is not _state.thread_hook:
            if _state.thread_hook is not None:
                _state.thread_hook.active = False
            _state.thread_hook = _ThreadHook(threading.excepthook)
            threading.excepthook = _state.thread_hook
    if asyncio_loop is not None:
        install_asyncio_handler(asyncio_loop)


def install_asyncio_handler(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Record exceptions that ``loop`` (default: the running loop) reports to its exception handler.

    Those are mostly exceptions of tasks whose result nobody retrieved, seen when the task is collected.
    Idempotent per loop; ``uninstall()`` restores the loop's previous handler.
    """
    if loop is None:
        import asyncio

        loop = asyncio.get_running_loop()
    with _state.lock:
        current = _state.loops.get(loop)
        if current is not None and current.active:
            return
        handler = _LoopHandler(loop.get_exception_handler())
        loop.set_exception_handler(handler)
        _state.loops[loop] = handler


def uninstall() -> None:
    """Remove every hook ``install`` added; the previous hooks are back as they were."""
    with _state.lock:
        sys_hook, _state.sys_hook = _state.sys_hook, None
        if sys_hook is not None:
            sys_hook.active = False
            if sys.excepthook is sys_hook:
                sys.excepthook = sys_hook.previous  # type: ignore[assignment]
        thread_hook, _state.thread_hook = _state.thread_hook, None
        if thread_hook is not None:
            thread_hook.active = False
            if threading.excepthook is thread_hook:
                threading.excepthook = thread_hook.previous  # type: ignore[assignment]
        loops = list(_state.loops.items())
        _state.loops.clear()
        for loop, handler in loops:
            handler.active = False
            with contextlib.suppress(Exception):
                if loop.get_exception_handler() is handler:
                    loop.set_exception_handler(handler.previous)
        _state.ignore = DEFAULT_IGNORE
        _state.capture_locals = False


def installed() -> bool:
    """True while the sys / threading hooks are installed."""
    return _state.sys_hook is not None


# --- the decorator / context manager -------------------------------------------------------------------------


class capturing_exceptions(contextlib.ContextDecorator):  # lower case: used like contextlib.suppress
    """Record exceptions leaving a block or function, then let them propagate.

    ``with evlog.capturing_exceptions(category="payments"): ...`` or ``@evlog.capturing_exceptions()`` on a
    function (``async def`` too). ``types`` says which exceptions are recorded (default ``Exception``, so
    cancellation, ``KeyboardInterrupt`` and ``SystemExit`` pass unrecorded); other keyword arguments are
    ``capture_exception``'s. An exception is recorded once even when it crosses several such blocks. A
    mistake in those arguments is logged on the ``evlog`` logger rather than raised, so it never replaces
    the app's own exception.
    """

    def __init__(self, types: Iterable[type[BaseException]] = (Exception,), **fields: Any) -> None:
        self.types = tuple(types)
        self.fields = fields

    def __enter__(self) -> capturing_exceptions:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, self.types) and not _recorded(exc):
            try:
                capture_exception(exc, **self.fields)
            except Exception:
                with guarded(), contextlib.suppress(Exception):
                    internal_logger.warning(
                        "evlog: capturing_exceptions(%s) could not record %s",
                        ", ".join(sorted(self.fields)),
                        type(exc).__name__,
                        exc_info=True,
                    )
        return False

    def __call__(self, func: F) -> F:  # type: ignore[override]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]
        return super().__call__(func)
