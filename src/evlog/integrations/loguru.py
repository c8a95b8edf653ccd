"""loguru: a sink that records each message as an evlog event.

    from loguru import logger
    logger.add(evlog_sink, level="INFO")     # not enqueue=True: see below

loguru calls a sink on the thread that logs (unless ``enqueue=True``, which hands messages to loguru's own
thread, where the app's evlog context is not visible), so each event carries the evlog context bound there.
The mapping follows the stdlib bridge (``evlog.logging``): name ``log.<module>``, the level by number
(SUCCESS is info, TRACE debug), the message, ``extra`` (``logger.bind`` / ``contextualize``) as ``data`` with
``logger``, ``file``, ``line``, ``function``, and for ``logger.exception(...)`` / ``opt(exception=...)`` the
exception fields.
"""

from __future__ import annotations

from typing import Any

from evlog._exceptions_info import exception_info
from evlog._guard import guarded, in_evlog, internal_logger
from evlog._intake import log_event
from evlog.logging import level_for

__all__ = ["evlog_sink"]


def evlog_sink(message: Any) -> None:
    """A loguru sink (``logger.add(evlog_sink)``): one event per message; never raises into the app's call."""
    if in_evlog():
        return
    try:
        _record(message.record)
    except Exception:
        with guarded():
            internal_logger.warning("evlog: could not record a loguru message", exc_info=True)


def _record(record: Any) -> None:
    data: dict[str, Any] = {str(k): v for k, v in record["extra"].items()}
    data.setdefault("logger", record["name"])
    data.setdefault("file", record["file"].path)
    data.setdefault("line", record["line"])
    data.setdefault("function", record["function"])
    labels = ["log"]
    info = None
    exc = record["exception"].value if record["exception"] is not None else None
    if isinstance(exc, BaseException):
        info = exception_info(exc)
        labels += ["exception", type(exc).__name__]
    log_event(
        f"log.{record['name'] or 'root'}",
        level=level_for(record["level"].no),
        category="exception" if info is not None else "log",
        labels=labels,
        message=record["message"],
        data=data,
        timestamp=record["time"],
        exception=info,
    )
