"""structlog: a processor that records each log call as an evlog event, and passes the call on unchanged.

    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        EvlogProcessor(),                      # before format_exc_info / the renderer: it needs exc_info as is
        structlog.processors.JSONRenderer(),
    ])

Processors run on the thread (or task) that logs, so each event carries the evlog context bound there. The
mapping follows the stdlib bridge (``evlog.logging``): name ``log.<logger name>`` (``log.structlog`` when the
logger has none), the method's level, message = the ``event`` string, the other keys as ``data``, and for
``log.exception(...)`` / ``exc_info=...`` the exception fields, as ``capture_exception`` fills them.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from evlog._event import Level
from evlog._excepthook import capture_exception
from evlog._guard import guarded, in_evlog, internal_logger
from evlog._intake import log_event

__all__ = ["EvlogProcessor"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40, "critical": 50}
_EVLOG_LEVEL = {10: Level.DEBUG, 20: Level.INFO, 30: Level.WARNING, 40: Level.ERROR, 50: Level.CRITICAL}
#: Keys structlog's own processors add that are not the app's data, or that become event fields.
_NOT_DATA = frozenset({"event", "level", "exc_info", "timestamp", "logger", "stack_info"})


def _exception(value: Any) -> BaseException | None:
    if isinstance(value, BaseException):
        return value
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[1]
    if value is True:
        return sys.exc_info()[1]
    return None


class EvlogProcessor:
    """Records each call at ``level`` or above (``"debug"``...``"critical"``) as an event; returns the event dict.

    Whatever goes wrong while recording is logged on the ``evlog`` logger, never raised into the app's call.
    """

    def __init__(self, level: str = "debug") -> None:
        if level.lower() not in _LEVELS:
            raise ValueError(f"level must be one of {', '.join(_LEVELS)}, got {level!r}")
        self.min_level = _LEVELS[level.lower()]

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if in_evlog():
            return event_dict
        levelno = _LEVELS.get(str(event_dict.get("level", method_name)).lower(), 20)
        if levelno >= self.min_level:
            try:
                self._record(logger, method_name, levelno, event_dict)
            except Exception:
                with guarded():
                    internal_logger.warning("evlog: could not record a structlog call", exc_info=True)
        return event_dict

    @staticmethod
    def _record(logger: Any, method_name: str, levelno: int, event_dict: MutableMapping[str, Any]) -> None:
        logger_name = event_dict.get("logger") or getattr(logger, "name", None) or "structlog"
        message = event_dict.get("event")
        data = {str(k): v for k, v in event_dict.items() if k not in _NOT_DATA}
        data.setdefault("logger", str(logger_name))
        exc = _exception(event_dict.get("exc_info")) or (sys.exc_info()[1] if method_name == "exception" else None)
        fields: dict[str, Any] = {
            "level": _EVLOG_LEVEL[levelno],
            "message": None if message is None else str(message),
            "data": data,
        }
        name = f"log.{logger_name}"
        if exc is not None:
            labels = ["log", "exception", type(exc).__name__]
            capture_exception(exc, name=name, category="exception", labels=labels, **fields)
        else:
            log_event(name, category="log", labels=["log"], **fields)
