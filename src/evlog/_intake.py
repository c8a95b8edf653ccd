"""The hot path: ``log_event`` and the gate it reads. This module is the only writer of the gate.

``log_event`` checks its arguments, stamps the time and appends one tuple to the active sink's intake queue:
no lock, no I/O, no per-call wake-up. Whether that fast path is open (configured, running, not sampling, not
disabled...) is decided elsewhere, by the sink, and published here through ``install``: one object, the gate,
swapped as a whole, so the hot path reads a handful of attributes and one comparison.

Every other case (nothing configured yet, shut down, sampling, the queue full, a test capture) goes through
the sink's ``submit``. The sink is an interface, not the client class, so this module imports nothing of the
engine and the exception hooks can reach the running client through it without an import cycle.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from time import time_ns as _time_ns
from typing import Any, Protocol

from evlog import _context
from evlog._build import LEVELS, Raw
from evlog._context import bound as _bound
from evlog._event import ExceptionInfo, Level, User, Value
from evlog._validate import bad, check_data, check_labels, check_rare

__all__ = ["FastPath", "Sink", "active", "install", "log_event", "refresh", "set_autoconfigure"]


class FastPath(Protocol):
    """What the gate needs to let ``log_event`` append directly."""

    #: The intake queue ``log_event`` appends to.
    queue: deque[Any]
    #: Appends are allowed while the queue holds fewer than this many items.
    limit: int
    #: The append that makes the queue this long calls ``wake``.
    wake_at: int
    wake: Callable[[], None]


class Sink(Protocol):
    """Where events go: the running client, or the synchronous stand-in of ``evlog.testing``."""

    def submit(self, raw: Raw) -> None:
        """The slow path: take one queued tuple when the fast path is closed (or the queue is full)."""

    def fast_path(self) -> FastPath | None:
        """The fast path's parameters now, or None while it must stay closed."""

    def on_uncaught(self, reason: str | None) -> None:
        """An uncaught exception is ending the process (``reason``; None: only a thread or a REPL)."""


class _Gate:
    """What the hot path reads: swapped as a whole by ``install``."""

    __slots__ = ("limit", "queue", "sink", "wake", "wake_at")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        #: At this many queued events the slow path takes over; 0 closes the fast path.
        self.limit = 0
        self.wake_at = 0
        self.wake: Callable[[], None] = _no_wake
        self.sink: Sink | None = None


def _no_wake() -> None:
    pass


_gate = _Gate()
_lock = threading.RLock()


def _no_autoconfigure() -> Sink:
    raise RuntimeError("evlog is not configured (import evlog, or call evlog.configure())")


#: Called on the first event when nothing is configured; set by the public API (which owns configure()).
_autoconfigure: Callable[[], Sink] = _no_autoconfigure


def set_autoconfigure(factory: Callable[[], Sink]) -> None:
    """Register what configures evlog at first use (injected so this module never imports the API)."""
    global _autoconfigure
    _autoconfigure = factory


def install(sink: Sink | None) -> Sink | None:
    """Make ``sink`` the active one (None: nothing configured); returns the previous one."""
    with _lock:
        previous = _gate.sink
        _gate.limit = 0  # close first: a concurrent log_event must never append to a half-swapped gate
        _gate.sink = sink
        fast = sink.fast_path() if sink is not None else None
        if fast is not None:
            _gate.queue = fast.queue
            _gate.wake_at = fast.wake_at
            _gate.wake = fast.wake
            _gate.limit = fast.limit
        return previous


def refresh(sink: Sink) -> None:
    """Re-read ``sink``'s fast path if it is still the active sink (it started, or it is shutting down)."""
    with _lock:
        if _gate.sink is sink:
            install(sink)


def active() -> Sink | None:
    return _gate.sink


def lock() -> threading.RLock:
    """Held while the active sink is swapped; configure() holds it to make install + previous one atomic."""
    return _lock


def log_event(
    name: str,
    level: Level | str = "info",
    category: str | None = None,
    labels: Iterable[str] | None = None,
    message: str | None = None,
    data: Mapping[str, Any] | None = None,
    timestamp: _dt.datetime | None = None,
    event_id: str | None = None,
    user: User | None = None,
    session_id: str | None = None,
    value: Value | None = None,
    exception: ExceptionInfo | None = None,
) -> None:
    """Record an event. Returns at once: delivery happens on background threads.

    Pass every argument after ``level`` by keyword: their order is not part of the API. (They are not
    declared keyword-only because CPython fills keyword-only defaults by dictionary look-ups, which would
    make every call about 70 ns slower.)

    Raises ``InvalidEventError`` (a ``ValueError``) when an argument is wrong, naming it and saying what is
    accepted. ``data`` values that JSON cannot hold are converted by documented rules later, on the worker.
    The event is never lost silently: if it cannot be delivered it is counted in ``stats()`` and reported.
    """
    if type(name) is not str or not name:
        bad("name", name)
    try:
        lvl = LEVELS[level]
    except (KeyError, TypeError):
        bad("level", level)
    if category is not None and type(category) is not str:
        bad("category", category)
    if labels is not None:
        labels = check_labels(labels)
    if message is not None and type(message) is not str:
        bad("message", message)
    if data is not None:
        if type(data) is dict:
            for key in data:
                if type(key) is not str:
                    data = check_data(data)
            data = data.copy()
        else:
            data = check_data(data)
    rare: Any = None
    bound = _bound() if _context.used else None  # the context bound on this thread or task
    if (
        timestamp is not None
        or event_id is not None
        or user is not None
        or session_id is not None
        or value is not None
        or exception is not None
    ):
        check_rare(timestamp, event_id, user, session_id, value, exception)
        rare = (event_id, user, session_id, value, exception, None, bound)
    else:
        rare = bound  # the context alone needs no tuple of its own: one allocation less per call
    # Short, and holding no container in the common case: the garbage collector scans each queued tuple
    # until it untracks it, so every slot costs every call.
    raw = (name, lvl, category, labels, message, data, timestamp or _time_ns(), rare)
    gate = _gate
    queue = gate.queue
    queued = len(queue)
    if queued < gate.limit:  # 0 unless the fast path is open: one test covers both
        queue.append(raw)
        if queued == gate.wake_at:
            gate.wake()
        return
    _submit_slow(raw)


def _submit_slow(raw: Raw) -> None:
    sink = _gate.sink
    if sink is None:
        sink = _autoconfigure()
    sink.submit(raw)
