"""The library's own cattrs converter (never cattrs' global one) and the common wire form of an event.

One converter, built by ``make_converter``, does both directions: it structures configuration strictly (a
string is not silently turned into a number, ``True`` is not an integer) and unstructures events into plain
JSON-compatible dicts for the local exporters and as the base of backends' wire formats.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import cattrs

from evlog._event import Event, ExceptionInfo, Level, TraceContext, User

__all__ = ["converter", "event_to_dict", "exception_to_dict", "make_converter", "rfc3339", "user_to_dict"]


def _strict(expected: tuple[type, ...], label: str) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if type(value) not in expected:
            raise TypeError(f"expected {label}, got {type(value).__name__} {value!r:.80}")
        return value

    return hook


def _float(value: Any, _type: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r:.80}")
    return float(value)


def rfc3339(moment: _dt.datetime) -> str:
    """RFC 3339 with an explicit offset (``...+00:00``): backends reject naive timestamps."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.isoformat(timespec="microseconds")


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True, omit_if_default=False)
    conv.register_structure_hook(str, _strict((str,), "a string"))
    conv.register_structure_hook(int, _strict((int,), "an integer"))
    conv.register_structure_hook(bool, _strict((bool,), "true or false"))
    conv.register_structure_hook(float, _float)
    conv.register_unstructure_hook(_dt.datetime, rfc3339)
    conv.register_unstructure_hook(Level, lambda level: level.value)
    return conv


converter = make_converter()


def _drop_empty(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if v is not None and v != () and v != [] and v != {}}


def user_to_dict(user: User, *, private: bool = False) -> dict[str, Any]:
    """The user's set fields; ``private_attributes`` only when asked for (local exporters)."""
    raw = converter.unstructure(user)
    if not private:
        raw.pop("private_attributes", None)
    return _drop_empty(raw)


def exception_to_dict(info: ExceptionInfo) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "exception_type": info.exception_type,
        "exception_msg": info.exception_msg,
        "stacktrace": list(info.stacktrace),
        "source_file": info.source_file,
        "source_line": info.source_line,
        "source_function": info.source_function,
    }
    if info.cause is not None:
        raw["cause"] = exception_to_dict(info.cause)
    if info.context is not None:
        raw["context"] = exception_to_dict(info.context)
    if info.exceptions:
        raw["exceptions"] = [exception_to_dict(sub) for sub in info.exceptions]
    return {k: v for k, v in raw.items() if v is not None}


def _trace_to_dict(trace: TraceContext) -> dict[str, Any]:
    return {
        "trace_id": f"{trace.trace_id:032x}",
        "span_id": f"{trace.span_id:016x}",
        "trace_flags": trace.trace_flags,
    }


def event_to_dict(event: Event, *, private: bool = True) -> dict[str, Any]:
    """The full event as JSON-compatible data; fields that are unset are left out."""
    raw: dict[str, Any] = {
        "name": event.name,
        "timestamp": rfc3339(event.timestamp),
        "event_id": event.event_id,
        "level": event.level.value,
        "category": event.category,
        "labels": list(event.labels),
        "message": event.message,
        "data": event.data,
        "user": user_to_dict(event.user, private=private) if event.user is not None else None,
        "session_id": event.session_id,
        "value": event.value,
        "exception": exception_to_dict(event.exception) if event.exception is not None else None,
        "trace": _trace_to_dict(event.trace) if event.trace is not None else None,
    }
    out = _drop_empty(raw)
    out.setdefault("data", {})
    return out
