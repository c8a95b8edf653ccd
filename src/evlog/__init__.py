"""evlog: record analytics and diagnostic events and ship them to the backends your team already uses.

    import evlog
    evlog.configure(exporters=["console"])
    evlog.log_event("user_logged_in", data={"username": "alice"})

``import evlog`` is light: exporters (and their requests / OpenTelemetry imports) load only when configured.
"""

from __future__ import annotations

# evlog.logging.EvlogHandler; `logging` stays out of __all__, where it would shadow the stdlib's module.
from evlog import logging as logging
from evlog._accounting import Drop, DropReason, ExporterStats, Stats
from evlog._api import configure, flush, shutdown, stats
from evlog._config import Config
from evlog._context import bind, context, set_user
from evlog._context import clear as clear_context
from evlog._context import current as current_context
from evlog._errors import ConfigError, EventRejected, EvlogError, ExporterError, InvalidEventError
from evlog._event import Event, ExceptionInfo, Level, TraceContext, User
from evlog._excepthook import capture_exception, capturing_exceptions, install_asyncio_handler
from evlog._excepthook import install as install_exception_hooks
from evlog._excepthook import uninstall as uninstall_exception_hooks
from evlog._exceptions_info import exception_info
from evlog._intake import log_event
from evlog._serverless import aflush, ashutdown, flush_after
from evlog._version import __version__
from evlog.exporters._base import Batch, Exporter, ExportResult, ExportStatus
from evlog.typing import OnDrop, Processor

__all__ = [
    "Batch",
    "Config",
    "ConfigError",
    "Drop",
    "DropReason",
    "Event",
    "EventRejected",
    "EvlogError",
    "ExceptionInfo",
    "ExportResult",
    "ExportStatus",
    "Exporter",
    "ExporterError",
    "ExporterStats",
    "InvalidEventError",
    "Level",
    "OnDrop",
    "Processor",
    "Stats",
    "TraceContext",
    "User",
    "__version__",
    "aflush",
    "ashutdown",
    "bind",
    "capture_exception",
    "capturing_exceptions",
    "clear_context",
    "configure",
    "context",
    "current_context",
    "exception_info",
    "flush",
    "flush_after",
    "install_asyncio_handler",
    "install_exception_hooks",
    "log_event",
    "set_user",
    "shutdown",
    "stats",
    "uninstall_exception_hooks",
]
