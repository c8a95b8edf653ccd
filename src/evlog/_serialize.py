"""The library's own cattrs converter (never cattrs' global one) and the common wire form of an event.

One converter, built by ``make_converter``, does both directions: it structures configuration strictly (a
string is not silently turned into a number, ``True`` is not an integer) and unstructures events into plain
JSON-compatible dicts for the local exporters and as the base of backends' wire formats.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
from collections.abc import Callable, Iterable
from typing import Any

import cattrs

from evlog._errors import EventRejected
from evlog._event import Event, ExceptionInfo, Level, TraceContext, User
from evlog._values import MAX_DEPTH, clean_text, to_json_value

__all__ = [
    "EncodeError",
    "converter",
    "dumps",
    "encode_each",
    "encode_safely",
    "encode_wires",
    "event_to_dict",
    "event_wire",
    "exception_to_dict",
    "make_converter",
    "map_each",
    "rfc3339",
    "user_to_dict",
]


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


_USER_FIELDS = ("id", "email", "phone", "ip", "user_agent", "country", "locale", "app_version")


def user_to_dict(user: User, *, private: bool = False) -> dict[str, Any]:
    """The user's set fields; ``private_attributes`` only when asked for (local exporters).

    Built by hand rather than by the converter: it runs once per event per exporter, and the dicts of a built
    event are already converted copies, so they are shared, not copied again.
    """
    out: dict[str, Any] = {}
    for field in _USER_FIELDS:
        value = getattr(user, field)
        if value is not None:
            out[field] = value
    if user.custom:
        out["custom"] = user.custom
    if user.custom_ids:
        out["custom_ids"] = user.custom_ids
    if private and user.private_attributes:
        out["private_attributes"] = user.private_attributes
    return out


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
    """The full event as JSON-compatible data; fields that are unset are left out (``data`` always present)."""
    return _event_fields(event, rfc3339(event.timestamp), private)


def event_wire(event: Event) -> dict[str, Any]:
    """``event_to_dict`` for the encoder: the timestamp is left for orjson to write (the same RFC 3339 text,
    faster) unless its microseconds are 0, which orjson would leave out."""
    stamp = event.timestamp
    return _event_fields(event, stamp if stamp.microsecond and stamp.tzinfo is _UTC else rfc3339(stamp), True)


_UTC = _dt.timezone.utc


def _event_fields(event: Event, timestamp: Any, private: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": event.name,
        "timestamp": timestamp,
        "event_id": event.event_id,
        "level": event.level.value,
    }
    if event.category is not None:
        out["category"] = event.category
    if event.labels:
        out["labels"] = list(event.labels)
    if event.message is not None:
        out["message"] = event.message
    out["data"] = event.data
    if event.user is not None:
        user = user_to_dict(event.user, private=private)
        if user:
            out["user"] = user
    if event.session_id is not None:
        out["session_id"] = event.session_id
    if event.value is not None:
        out["value"] = event.value
    if event.exception is not None:
        out["exception"] = exception_to_dict(event.exception)
    if event.trace is not None:
        out["trace"] = _trace_to_dict(event.trace)
    return out


# --- the shared encoding step --------------------------------------------------------------------------------
#
# Every exporter that sends JSON encodes through here: ``dumps`` for one object (a whole batch when it can),
# ``encode_each`` for one object per event, each inside its own guard. orjson is loaded on first use (never by
# ``import evlog``); without it the stdlib encoder gives the same JSON (floats may be spelled differently, e.g.
# ``1e+16`` and ``1e16``, which parse to the same number).

_orjson_dumps: Callable[[Any], bytes] | None = None


def _load_encoder() -> Callable[[Any], bytes]:
    global _orjson_dumps  # resolved once, on first use
    try:
        import orjson  # kept out of ``import evlog``
    except ImportError:  # pragma: no cover - orjson is a dependency; this keeps an odd platform working

        def stdlib(value: Any) -> bytes:
            return _json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

        _orjson_dumps = stdlib
    else:
        _orjson_dumps = orjson.dumps
    return _orjson_dumps


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Raises ``TypeError``/``ValueError`` for what JSON cannot hold (see ``encode_safely``)."""
    encode = _orjson_dumps or _load_encoder()
    return encode(value)


class EncodeError(ValueError):
    """A value still cannot be encoded after conversion; ``path`` names the field (``data.items[3]``)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path or 'the event'} cannot be encoded as JSON ({detail})")
        self.path = path


def _repair(value: Any, path: str, depth: int) -> Any:
    """``value`` by the conversion rules, or ``EncodeError`` naming the first part that would need a placeholder.

    At encode time only the rules that keep a value's meaning apply (surrogates, big integers, non-finite
    floats, dates, ...): a placeholder is for what ``log_event`` was given, and a value a processor put in
    afterwards that has no rule is refused with its path instead (the processor has a bug to see)."""
    tp = type(value)
    if tp is dict:
        if depth >= MAX_DEPTH:
            raise EncodeError(path, f"nested deeper than {MAX_DEPTH} levels or refers to itself")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise EncodeError(path, f"key {type(key).__name__} {str(key)[:80]!r} is not a string")
            out[clean_text(key)] = _repair(item, f"{path}.{key[:80]}" if path else key[:80], depth + 1)
        return out
    if tp is list or tp is tuple:
        if depth >= MAX_DEPTH:
            raise EncodeError(path, f"nested deeper than {MAX_DEPTH} levels or refers to itself")
        return [_repair(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    converted, problems = to_json_value(value)
    if problems:
        raise EncodeError(path, problems[0])
    return converted


def encode_safely(value: Any) -> bytes:
    """``dumps(value)``; if that fails, ``value`` repaired by the conversion rules that keep its meaning
    (lone surrogates, integers past 2**53...), then encoded. ``EncodeError`` (with the field path) when a part
    of it has no such rule. Events are converted when built, so this serves values processors add later."""
    try:
        return dumps(value)
    except (TypeError, ValueError, RecursionError):
        pass
    repaired = _repair(value, "", 0)
    try:
        return dumps(repaired)
    except (TypeError, ValueError, RecursionError) as exc:  # pragma: no cover - the repair covers every case
        raise EncodeError("", f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def encode_each(
    events: Iterable[Event],
    to_wire: Callable[[Event], Any],
    reject: Callable[[Event, str], None],
) -> list[tuple[Event, bytes]]:
    """``(event, JSON of to_wire(event))`` per event, each inside its own guard: an event whose mapping raises
    (``EventRejected`` for a backend's rule, anything else for an odd value) or whose wire form cannot be
    encoded is passed to ``reject`` with the reason, and costs no other event."""
    return encode_wires(map_each(events, to_wire, reject), reject)


def map_each(
    events: Iterable[Event], to_wire: Callable[[Event], Any], reject: Callable[[Event, str], None]
) -> list[tuple[Event, Any]]:
    """``(event, to_wire(event))`` per event that maps; the others go to ``reject`` with the reason."""
    out: list[tuple[Event, Any]] = []
    for event in events:
        try:
            out.append((event, to_wire(event)))
        except EventRejected as exc:
            reject(event, str(exc))
        except Exception as exc:  # one event's odd value must not cost its batch
            reject(event, f"event could not be mapped ({type(exc).__name__}: {str(exc)[:200]})")
    return out


def encode_wires(pairs: Iterable[tuple[Event, Any]], reject: Callable[[Event, str], None]) -> list[tuple[Event, bytes]]:
    """``(event, JSON bytes)`` for each ``(event, wire form)``; one that cannot be encoded goes to ``reject``."""
    out: list[tuple[Event, bytes]] = []
    encode = _orjson_dumps or _load_encoder()
    for event, wire in pairs:
        try:
            out.append((event, encode(wire)))
        except (TypeError, ValueError, RecursionError):
            try:
                out.append((event, encode_safely(wire)))
            except EncodeError as exc:
                reject(event, str(exc))
    return out
