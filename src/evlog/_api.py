"""The public functions over the running client: configure, flush, shutdown, stats; exit and fork wiring.

This is the only module that creates clients and swaps them in; the engine (``_client``, ``_router``,
``_pipeline``) knows nothing of it, and the hot path reaches it only through the autoconfigure factory it
registers with ``_intake``. Process-wide registration (atexit, fork) happens once, at import.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from evlog import _build, _context, _excepthook, _intake, _signals
from evlog._accounting import Stats
from evlog._client import Client
from evlog._config import Config, resolve_config
from evlog._debug import log_configuration
from evlog._guard import guarded, internal_logger
from evlog._options import parse_bool

__all__ = ["configure", "current_client", "flush", "shutdown", "stats"]


def current_client() -> Client | None:
    """The running client (None when nothing is configured, or inside ``evlog.testing.capture_events()``)."""
    sink = _intake.active()
    return sink if isinstance(sink, Client) else None


def configure(
    *,
    exporters: Any = None,
    release: str | None = None,
    environment: str | None = None,
    service: str | None = None,
    flush_interval: float | None = None,
    max_queue_size: int | None = None,
    shutdown_timeout: float | None = None,
    retry_deadline: float | None = None,
    retry_initial_backoff: float | None = None,
    retry_max_backoff: float | None = None,
    intake_wait: float | None = None,
    sample_rate: float | None = None,
    sample_errors: bool | None = None,
    disabled: bool | None = None,
    capture_exceptions: bool | None = None,
    handle_signals: bool | None = None,
    strict: bool | None = None,
    debug: bool | None = None,
    spool_dir: str | None = None,
    spool_max_bytes: int | None = None,
    spool_max_age: float | None = None,
    before_send: Any = None,
    on_drop: Any = None,
) -> Config:
    """Set up evlog. Arguments left as ``None`` come from ``EVLOG_*`` variables, the config file, or defaults.

    ``exporters`` is a list of names and/or ``Exporter`` instances (``["console", StatsigExporter(...)]``), or a
    mapping of names to their options (``{"jsonl": {"path": "events.jsonl"}}``). Calling ``configure`` again
    replaces the configuration: the previous one is flushed and shut down (within its ``shutdown_timeout``).
    Raises ``ConfigError`` naming the bad value and where it came from.
    """
    # Every parameter is a Config option of the same name (a test checks it): pass them on by name.
    args = dict(locals())
    config, where = resolve_config(args)
    log_configuration(config, where)
    client = Client(config)
    with _intake.lock():
        previous = _intake.install(client)
    if isinstance(previous, Client):
        previous.shutdown(previous.config.shutdown_timeout)
    if config.spool_dir:
        # Spools left by processes that are gone are delivered now, not on this process's first event.
        client.start()
    _apply_exception_capture(config.capture_exceptions)
    _apply_signal_handling(config.handle_signals)
    return config


def _autoconfigure() -> _intake.Sink:
    """First use without ``configure()``: configure from env / file / defaults; a bad setting raises its
    ``ConfigError`` here exactly as ``configure()`` would (documented in the README's configuration section)."""
    with _intake.lock():
        sink = _intake.active()
        if sink is not None:
            return sink
        # A bad setting is treated as configure() treats it: the same ConfigError, raised to the caller (the
        # first log_event), rather than a logged line and events quietly sent to the console instead.
        configure()
        sink = _intake.active()
        assert sink is not None
        return sink


_hooks_from_config = False


def _apply_exception_capture(enabled: bool) -> None:
    """Install the uncaught-exception hooks, or remove them if an earlier ``configure()`` installed them.

    Hooks the app installed itself (``evlog.install_exception_hooks()``) are left alone by a ``configure()``
    that does not ask for them.
    """
    global _hooks_from_config
    if enabled:
        _excepthook.install()
        _hooks_from_config = True
    elif _hooks_from_config:
        _excepthook.uninstall()
        _hooks_from_config = False


_signals_from_config = False


def _signal_timeout() -> float:
    client = current_client()
    return client.config.shutdown_timeout if client is not None else 0.0


def _apply_signal_handling(enabled: bool) -> None:
    global _signals_from_config
    if enabled:
        _signals_from_config = _signals.install(_signal_timeout)
    elif _signals_from_config:
        _signals.uninstall()
        _signals_from_config = False


def flush(timeout: float = 5.0) -> bool:
    """Hand off everything queued so far. True when done within ``timeout`` seconds, False otherwise."""
    client = current_client()
    if client is None:
        return True
    return client.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Deliver what is queued and stop, taking at most ``timeout`` seconds (default: ``shutdown_timeout``).

    Runs by itself at interpreter exit. Afterwards ``log_event`` is a counted no-op until ``configure()``.
    Returns True when everything finished in time.
    """
    client = current_client()
    if client is None:
        return True
    try:
        return client.shutdown(client.config.shutdown_timeout if timeout is None else timeout)
    finally:
        _signals.hand_over_deferred()


def stats() -> Stats:
    """Figures per exporter: queued, sent, retried and dropped by reason."""
    client = current_client()
    if client is None:
        return Stats(exporters={})
    return client.stats()


def reset(timeout: float) -> None:
    """Shut the running client down within ``timeout`` and forget it; remove evlog's exception hooks."""
    global _hooks_from_config
    client = current_client()
    if client is not None:
        client.shutdown(timeout)
    _intake.install(None)
    _context.clear()
    _excepthook.uninstall()
    _hooks_from_config = False
    _apply_signal_handling(False)


def _after_fork_in_child() -> None:
    _build.reseed_after_fork()
    client = current_client()
    if client is not None:
        client.reset_after_fork()
        _intake.install(client)
        _deliver_at_multiprocessing_exit()


class _ChildExit:
    """Anchor for multiprocessing's after-fork registry (it holds its entries by weak reference)."""


_child_exit = _ChildExit()


def _deliver_at_multiprocessing_exit() -> None:
    """A multiprocessing child ends through ``os._exit``, which skips ``atexit``: hook its own exit instead.

    Its bootstrap clears the finalizers it inherited and then runs the after-fork callbacks, so the finalizer is
    registered from one of those; ``_exit_function`` runs it when the child's work is done (``Process.run`` or a
    ``Pool`` worker returned). Only when multiprocessing is already loaded: evlog never imports it.
    """
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    with guarded():
        try:
            util.register_after_fork(_child_exit, _in_multiprocessing_child)
        except Exception:
            internal_logger.debug("evlog: could not hook the multiprocessing child's exit", exc_info=True)


def _in_multiprocessing_child(_anchor: object) -> None:
    """Runs in a multiprocessing child once its bootstrap is done with what it inherited.

    ``_exit_function`` runs the finalizer when the child's work is done. A ``Pool`` leaving a ``with`` block
    terminates its workers with SIGTERM, whose default action would lose what they queued, so a child whose
    SIGTERM still has the default action delivers first (within ``shutdown_timeout``) and then dies of it.
    """
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, _at_exit, exitpriority=100)
    import signal

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        _signals.install(_signal_timeout, signums=(signal.SIGTERM,))


def _at_exit() -> None:
    client = current_client()
    if client is not None:
        try:
            client.shutdown(client.exit_timeout())
        finally:
            _signals.hand_over_deferred()


def _hooks_from_environment() -> None:
    """``EVLOG_CAPTURE_EXCEPTIONS=1``: hooks from ``import evlog`` on, so a crash before the first event counts.

    Only that variable is read here (configuration proper waits for the first event or ``configure()``); a
    value that is not a boolean is left for ``configure()`` to report.
    """
    global _hooks_from_config
    try:
        wanted = parse_bool(os.environ.get("EVLOG_CAPTURE_EXCEPTIONS", ""))
    except ValueError:
        return
    if wanted:
        _excepthook.install()
        _hooks_from_config = True


_intake.set_autoconfigure(_autoconfigure)
_hooks_from_environment()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
