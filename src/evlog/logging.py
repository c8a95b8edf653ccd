"""The bridge from the standard library's ``logging`` to evlog: ``EvlogHandler``.

Web frameworks catch the exceptions of request handlers and log them (Flask on ``app.logger``, Django on
``django.request``, uvicorn on ``uvicorn.error``); attaching this handler to those loggers, or to the root
logger, turns them into exception events without framework-specific code.

How a record becomes an event:

- ``name``: ``log.<logger name>`` (``log.root`` for the root logger), as the DataCat SDK's handler does.
- ``level``: DEBUG→debug, INFO→info, WARNING→warning, ERROR→error, CRITICAL→critical; a level in between
  maps to the nearest lower one (25→info), below DEBUG to debug.
- ``message``: ``record.getMessage()``, or the handler's formatter output when one is set.
- ``category``: ``exception`` when the record carries ``exc_info``, else ``log``.
- ``labels``: ``["log"]``, plus ``"exception"`` and the exception's type name when there is one.
- ``data``: the ``extra={...}`` fields (record attributes that are not standard ``LogRecord`` ones), then
  ``logger``, ``file``, ``line``, ``function`` (where the log call is) unless ``extra`` set those keys.
- ``exception``: from ``exc_info``, with the same fields as ``capture_exception``.
- ``timestamp``: ``record.created`` (right even when records reach the handler late, e.g. via a queue).

Records are never fed back: records of the ``evlog`` logger hierarchy, records emitted while evlog itself is
at work on that thread, and records from evlog's own threads (``evlog-*``, e.g. ``urllib3`` debug lines
while an exporter sends) are ignored.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import Any

from evlog._event import ExceptionInfo, Level
from evlog._exceptions_info import exception_info
from evlog._guard import guarded, in_evlog
from evlog._intake import log_event

__all__ = ["EvlogHandler", "level_for"]

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def level_for(levelno: int) -> Level:
    """The evlog level of a ``logging`` level number: the nearest standard level at or below it."""
    if levelno >= logging.CRITICAL:
        return Level.CRITICAL
    if levelno >= logging.ERROR:
        return Level.ERROR
    if levelno >= logging.WARNING:
        return Level.WARNING
    if levelno >= logging.INFO:
        return Level.INFO
    return Level.DEBUG


def _own_record(record: logging.LogRecord) -> bool:
    if record.name == "evlog" or record.name.startswith("evlog."):
        return True
    return in_evlog() or threading.current_thread().name.startswith("evlog-")


class EvlogHandler(logging.Handler):
    """A ``logging.Handler`` that records each record it handles as an evlog event (mapping in the module doc).

    ``capture_locals=True`` adds local variable values to the stack traces of ``exc_info`` records (off by
    default: they can hold secrets). Errors while recording go to ``Handler.handleError`` like any handler's.
    """

    def __init__(self, level: int | str = logging.NOTSET, *, capture_locals: bool = False) -> None:
        super().__init__(level)
        self.capture_locals = capture_locals

    def emit(self, record: logging.LogRecord) -> None:
        if _own_record(record):
            return
        try:
            with guarded():
                self._record(record)
        except Exception:
            self.handleError(record)

    def _record(self, record: logging.LogRecord) -> None:
        message = self.format(record) if self.formatter is not None else record.getMessage()
        data: dict[str, Any] = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        data.setdefault("logger", record.name)
        data.setdefault("file", record.pathname)
        data.setdefault("line", record.lineno)
        data.setdefault("function", record.funcName)
        info: ExceptionInfo | None = None
        labels = ["log"]
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseException):
            info = exception_info(exc, capture_locals=self.capture_locals)
            labels += ["exception", type(exc).__name__]
        log_event(
            f"log.{record.name or 'root'}",
            level=level_for(record.levelno),
            category="exception" if info is not None else "log",
            labels=labels,
            message=message,
            data=data,
            timestamp=_dt.datetime.fromtimestamp(record.created, _dt.timezone.utc),
            exception=info,
        )
