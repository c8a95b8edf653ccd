"""The public functions over the running client: configure, flush, shutdown, stats; exit and fork wiring.

This is the only module that creates clients and swaps them in; the engine (``_client``, ``_router``,
``_pipeline``) knows nothing of it, and the hot path reaches it only through the autoconfigure factory it
registers with ``_intake``. Process-wide registration (atexit, fork) happens once, at import.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from evlog import _build, _excepthook, _intake
from evlog._accounting import Stats
from evlog._client import Client
from evlog._config import Config, load_config
from evlog._errors import ConfigError, ExporterError
from evlog._guard import guarded, internal_logger

__all__ = ["configure", "current_client", "flush", "shutdown", "stats"]


def current_client() -> Client | None:
    """The running client (None when nothing is configured, or inside ``evlog.testing.capture_events()``)."""
    sink = _intake.active()
    return sink if isinstance(sink, Client) else None


def configure(
    *,
    exporters: Any = None,
    flush_interval: float | None = None,
    max_queue_size: int | None = None,
    shutdown_timeout: float | None = None,
    retry_deadline: float | None = None,
    retry_initial_backoff: float | None = None,
    retry_max_backoff: float | None = None,
    sample_rate: float | None = None,
    disabled: bool | None = None,
    capture_exceptions: bool | None = None,
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
    config = load_config(args)
    client = Client(config)
    with _intake.lock():
        previous = _intake.install(client)
    if isinstance(previous, Client):
        previous.shutdown(previous.config.shutdown_timeout)
    _apply_exception_capture(config.capture_exceptions)
    return config


def _autoconfigure() -> _intake.Sink:
    """First use without ``configure()``: configure from env / file / defaults, never crashing the app."""
    with _intake.lock():
        sink = _intake.active()
        if sink is not None:
            return sink
        try:
            configure()
        except Exception as exc:  # a broken environment must never crash the app's log_event
            if not isinstance(exc, (ConfigError, ExporterError)):
                exc = ExporterError(f"{type(exc).__name__}: {exc}")
            with guarded():
                internal_logger.error(
                    "evlog: the configuration from the environment / config file is invalid (%s); "
                    "falling back to the console exporter until configure() is called",
                    exc,
                )
            from evlog.exporters.console import ConsoleExporter

            _intake.install(Client(Config(exporters=(ConsoleExporter(),))))
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
    return client.shutdown(client.config.shutdown_timeout if timeout is None else timeout)


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
    _excepthook.uninstall()
    _hooks_from_config = False


def _after_fork_in_child() -> None:
    _build.reseed_after_fork()
    client = current_client()
    if client is not None:
        client.reset_after_fork()
        _intake.install(client)


def _at_exit() -> None:
    client = current_client()
    if client is not None:
        client.shutdown(client.exit_timeout())


_intake.set_autoconfigure(_autoconfigure)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
