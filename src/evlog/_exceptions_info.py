"""Turning a Python exception into an ``ExceptionInfo``: the one place that reads tracebacks.

Kept apart from the hooks so that the logging bridge, ``capture_exception`` and the uncaught-exception hooks
all describe an exception the same way. Everything here must cope with hostile exceptions (a ``__str__`` that
raises, cyclic chains, enormous recursion tracebacks) because it runs while the app is already failing.
"""

from __future__ import annotations

import builtins
import os
import sysconfig
import traceback
from functools import lru_cache
from types import TracebackType

from evlog._event import ExceptionInfo

__all__ = ["exception_info", "qualified_name"]

#: A stack trace longer than this keeps its head and tail with a marker between (RecursionError can produce
#: tens of thousands of lines, which no backend accepts in one event).
MAX_STACK_LINES = 1000
_HEAD_LINES = 100
#: How deep causes, contexts and group members are followed; what lies deeper is summarised, not dropped.
MAX_CHAIN_DEPTH = 8
_GROUP = getattr(builtins, "BaseExceptionGroup", None)


def qualified_name(exc_type: type[BaseException]) -> str:
    """``myapp.errors.PaymentError``; builtins without their module (``ValueError``), as Python prints them."""
    module = getattr(exc_type, "__module__", None)
    name = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "?")
    if not module or module == "builtins":
        return str(name)
    return f"{module}.{name}"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<str() of {type(exc).__name__} raised an exception>"


def _lines(exc: BaseException, *, chain: bool, capture_locals: bool) -> tuple[str, ...]:
    try:
        te = traceback.TracebackException(
            type(exc), exc, exc.__traceback__, capture_locals=capture_locals, compact=True
        )
        text = "".join(te.format(chain=chain))
    except Exception:  # a broken __repr__ under capture_locals, or worse: keep at least the summary line
        text = f"{qualified_name(type(exc))}: {_message(exc)}"
    lines = text.splitlines()
    if len(lines) > MAX_STACK_LINES:
        tail = MAX_STACK_LINES - _HEAD_LINES - 1
        omitted = len(lines) - _HEAD_LINES - tail
        lines = [*lines[:_HEAD_LINES], f"  ... {omitted} lines omitted by evlog ...", *lines[-tail:]]
    return tuple(lines)


@lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """Directories whose code is not the app's: the stdlib, installed packages and evlog itself."""
    dirs = {os.path.dirname(os.path.abspath(__file__))}
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            dirs.add(os.path.abspath(paths[key]))
    return tuple(sorted(d.rstrip(os.sep) + os.sep for d in dirs))


def is_library_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>, <stdin>
        return filename != "<stdin>" and filename != "<string>"
    path = os.path.abspath(filename)
    return path.startswith(_library_dirs()) or os.sep + "site-packages" + os.sep in path


def _source(tb: TracebackType | None) -> tuple[str | None, int | None, str | None]:
    """The innermost frame of the app's own code; the innermost frame of all when none is the app's."""
    frames: list[tuple[str, int | None, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    if not frames:
        return None, None, None
    for filename, line, function in reversed(frames):
        if not is_library_file(filename):
            return filename, line, function
    return frames[-1]


def exception_info(exc: BaseException, *, capture_locals: bool = False) -> ExceptionInfo:
    """Describe ``exc`` with its chain (``__cause__``, ``__context__``, group members).

    ``stacktrace`` of the outermost info is what Python would print, chain included, because many backends
    show only that; the infos in ``cause`` / ``context`` / ``exceptions`` carry only their own part. Local
    variable values appear (as reprs, in the stack trace) only with ``capture_locals=True``: they can hold
    secrets, so it is off unless asked for.
    """
    if not isinstance(exc, BaseException):
        raise TypeError(f"expected an exception, got {type(exc).__name__}")
    return _build(exc, chain=True, capture_locals=capture_locals, depth=0, seen=set())


def _build(exc: BaseException, *, chain: bool, capture_locals: bool, depth: int, seen: set[int]) -> ExceptionInfo:
    seen = seen | {id(exc)}
    source_file, source_line, source_function = _source(exc.__traceback__)

    def follow(other: BaseException | None) -> ExceptionInfo | None:
        if other is None or id(other) in seen:
            return None
        if depth + 1 >= MAX_CHAIN_DEPTH:
            return ExceptionInfo(exception_type=qualified_name(type(other)), exception_msg=_message(other))
        return _build(other, chain=False, capture_locals=capture_locals, depth=depth + 1, seen=seen)

    cause = follow(exc.__cause__)
    context = None if exc.__suppress_context__ else follow(exc.__context__)
    members: tuple[ExceptionInfo, ...] = ()
    if _GROUP is not None and isinstance(exc, _GROUP):
        found = (follow(sub) for sub in getattr(exc, "exceptions", ()))
        members = tuple(info for info in found if info is not None)
    return ExceptionInfo(
        exception_type=qualified_name(type(exc)),
        exception_msg=_message(exc),
        stacktrace=_lines(exc, chain=chain, capture_locals=capture_locals),
        source_file=source_file,
        source_line=source_line,
        source_function=source_function,
        cause=cause,
        context=context,
        exceptions=members,
    )
