"""Opt-in SIGTERM / SIGINT handling: deliver what is queued, then let the signal do what it would have done.

A process stopped by SIGTERM (a container stop, a supervisor, ``kill``) never runs ``atexit``, so whatever was
queued is lost. The handler delivers within ``shutdown_timeout`` and then hands over: to the handler that was
installed before (the app's, a framework's), or, when that was the default action, it restores the default and
sends the signal again, so the process ends exactly as it would have (same exit status, "killed by SIGTERM").
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from evlog import _intake
from evlog._guard import guarded, internal_logger

__all__ = ["hand_over_deferred", "install", "installed", "uninstall"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _Handover:
    """Our handler for one signal; remembers the previous one to hand over to."""

    def __init__(self, signum: int, previous: _Handler, timeout: Callable[[], float]) -> None:
        self.signum = signum
        self.previous = previous
        self.timeout = timeout
        self.active = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        global _deferred
        if self.active:
            sink = _intake.active()
            if getattr(sink, "shutdown_thread", None) == threading.get_ident() and not _finished(sink):
                # The signal interrupted a shutdown running on this very thread (at exit, say): let it finish,
                # then hand the signal over (``hand_over_deferred``); ending the process now would lose it all.
                _deferred = (self, signum)
                return
            self._deliver()
        self._hand_over(signum, frame)

    def _hand_over(self, signum: int, frame: FrameType | None) -> None:
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # the default action: end the process the way the signal would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _deliver(self) -> None:
        sink = _intake.active()
        if getattr(sink, "closed", False):  # another thread is shutting down: give it its time, then go on
            with guarded():
                _finished_within(sink, self.timeout())
            return
        shutdown = getattr(sink, "shutdown", None)
        flush = getattr(sink, "flush", None)
        with guarded():
            try:
                # The default action ends the process here: shut down (sessions end, files close). A handler of
                # the app's may keep the process going a while: only deliver what is queued.
                if self.previous in (signal.SIG_DFL, None) and callable(shutdown):
                    shutdown(self.timeout())
                elif callable(flush):
                    flush(self.timeout())
            except Exception:
                internal_logger.warning("evlog: delivering on signal %d failed", self.signum, exc_info=True)


def _is_current(signum: int, handler: _Handover) -> bool:
    return signal.getsignal(signum) is handler  # type: ignore[comparison-overlap]


def _finished(sink: object) -> bool:
    done = getattr(sink, "shut_down", None)
    return bool(done is not None and done.is_set())


def _finished_within(sink: object, timeout: float) -> None:
    done = getattr(sink, "shut_down", None)
    if done is not None:
        done.wait(timeout)


#: A signal that arrived during a shutdown on the main thread, handed over once that shutdown is done.
_deferred: tuple[_Handover, int] | None = None


def hand_over_deferred() -> None:
    """Called after a shutdown on the main thread: the signal that interrupted it now does what it would have."""
    global _deferred
    deferred, _deferred = _deferred, None
    if deferred is not None:
        handler, signum = deferred
        handler._hand_over(signum, None)


_installed: dict[int, _Handover] = {}
_lock = threading.Lock()


def install(timeout: Callable[[], float], signums: tuple[int, ...] = SIGNALS) -> bool:
    """Install the handlers (main thread only: Python allows signal handlers nowhere else). False if not."""
    if threading.current_thread() is not threading.main_thread():
        with guarded():
            internal_logger.warning("evlog: handle_signals needs configure() in the main thread; not installed")
        return False
    with _lock:
        for signum in signums:
            current = _installed.get(signum)
            if current is not None and _is_current(signum, current):
                current.timeout = timeout
                continue
            handler = _Handover(signum, signal.getsignal(signum), timeout)
            signal.signal(signum, handler)
            _installed[signum] = handler
    return True


def uninstall() -> None:
    """Put the previous handlers back where ours is still the current one (else ours becomes a pass-through)."""
    if threading.current_thread() is not threading.main_thread():
        for handler in _installed.values():
            handler.active = False
        return
    with _lock:
        for signum, handler in list(_installed.items()):
            handler.active = False
            if _is_current(signum, handler):
                signal.signal(signum, handler.previous if handler.previous is not None else signal.SIG_DFL)
            del _installed[signum]


def installed() -> bool:
    return any(h.active for h in _installed.values())
