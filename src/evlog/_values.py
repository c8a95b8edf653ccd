"""Conversion of ``data`` values into what JSON can hold.

Applied once per event on the background thread (never in ``log_event``), before processors and exporters see
the event. The rules, also listed in the README:

==========================  ===============================================================
value                       becomes
==========================  ===============================================================
None, bool, int, str        itself
float                       itself; NaN and infinities become the strings "NaN", "Infinity",
                            "-Infinity" (JSON has no such numbers)
datetime, date, time        ISO 8601 string (``isoformat()``)
timedelta                   seconds as a float
Decimal                     string (exact; no binary rounding)
UUID, Path, IP addresses    string
Enum member                 its ``value``, converted by these rules
bytes, bytearray            standard base64 string
list, tuple                 list
set, frozenset              list, sorted when the items can be ordered
mapping                     dict; non-string keys become ``str(key)``
attrs / dataclass instance  dict of its fields
anything else               the string ``"<unserializable TypeName>"``, reported once per type
==========================  ===============================================================

Containers nested deeper than ``MAX_DEPTH`` and self-referencing containers are replaced the same way, so
one odd value never costs the rest of its event or its batch.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import ipaddress
import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import attrs

__all__ = ["MAX_DEPTH", "to_json_data"]

MAX_DEPTH = 32

_PLAIN = (str, int, bool, type(None))


def _placeholder(value: Any, problems: list[str], why: str) -> str:
    problems.append(f"{type(value).__qualname__}: {why}")
    return f"<unserializable {type(value).__qualname__}>"


def _convert(value: Any, problems: list[str], depth: int, active: set[int]) -> Any:
    tp = type(value)
    if tp in _PLAIN:
        return value
    if tp is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= MAX_DEPTH:
        return _placeholder(value, problems, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        return _container(value, problems, depth, active, _convert_mapping)
    if isinstance(value, (list, tuple)):
        return _container(value, problems, depth, active, _convert_list)
    if isinstance(value, (set, frozenset)):
        return _container(value, problems, depth, active, _convert_set)
    if isinstance(value, enum.Enum):
        return _convert(value.value, problems, depth + 1, active)
    if isinstance(value, (str, int)):  # subclasses (IntFlag handled above as Enum)
        return str(value) if isinstance(value, str) else int(value)
    if isinstance(value, float):
        return _convert(float(value), problems, depth, active)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (uuid.UUID, PurePath, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if attrs.has(tp):
        fields = {f.name: getattr(value, f.name) for f in attrs.fields(tp)}
        return _container(fields, problems, depth, active, _convert_mapping, key=id(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _container(fields, problems, depth, active, _convert_mapping, key=id(value))
    return _placeholder(value, problems, "no conversion rule")


def _container(
    value: Any,
    problems: list[str],
    depth: int,
    active: set[int],
    convert: Callable[[Any, list[str], int, set[int]], Any],
    key: int | None = None,
) -> Any:
    ident = id(value) if key is None else key
    if ident in active:
        return _placeholder(value, problems, "refers to itself")
    active.add(ident)
    try:
        return convert(value, problems, depth + 1, active)
    finally:
        active.discard(ident)


def _convert_mapping(value: Mapping[Any, Any], problems: list[str], depth: int, active: set[int]) -> Any:
    out: dict[str, Any] = {}
    for key, item in value.items():
        out[key if type(key) is str else str(key)] = _convert(item, problems, depth, active)
    return out


def _convert_list(value: Any, problems: list[str], depth: int, active: set[int]) -> Any:
    return [_convert(item, problems, depth, active) for item in value]


def _convert_set(value: Any, problems: list[str], depth: int, active: set[int]) -> Any:
    items = [_convert(item, problems, depth, active) for item in value]
    try:
        items.sort()
    except TypeError:
        items.sort(key=repr)
    return items


def to_json_data(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A JSON-compatible copy of ``data`` and the problems met (one string per value replaced)."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    active = {id(data)}
    for key, item in data.items():
        if type(item) in _PLAIN:
            out[key] = item
        else:
            out[key] = _convert(item, problems, 1, active)
    return out, problems
