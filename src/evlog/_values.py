"""Conversion of ``data`` values into what JSON can hold.

Applied once per event on the background thread (never in ``log_event``), before processors and exporters see
the event. The rules, also listed in the README:

==========================  ===============================================================
value                       becomes
==========================  ===============================================================
None, bool                  itself
int                         itself between -2**53 and 2**53; beyond, its exact decimal string
                            (several backends parse JSON numbers as doubles, which would round it)
str                         itself; a lone surrogate (half of a UTF-16 pair, which UTF-8 cannot
                            encode) becomes U+FFFD; a pair held as two code points becomes the
                            character it encodes
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

Containers nested deeper than ``MAX_DEPTH``, self-referencing containers and values whose conversion raises
(a ``__str__`` that fails, a dict changed by another thread meanwhile) are replaced the same way, so one odd
value never costs the rest of its event or its batch. The same rules apply to every free-form field of an
event: ``data``, ``User.custom`` and ``private_attributes``, custom ids and the exception's text fields.
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

__all__ = ["MAX_DEPTH", "MAX_EXACT_INT", "clean_text", "to_json_data", "to_json_value"]

MAX_DEPTH = 32
#: The largest integer a JSON double holds exactly; integers beyond +/- this are sent as decimal strings.
MAX_EXACT_INT = 2**53

_PLAIN = (bool, type(None))
_DIGITS = 10**1000


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (valid pairs joined), so that UTF-8 can encode it."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _int_text(value: int) -> str:
    """The exact decimal form, even past ``sys.get_int_max_str_digits()`` (which ``str()`` refuses)."""
    if -_DIGITS < value < _DIGITS:
        return str(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    parts: list[str] = []
    while value >= _DIGITS:
        value, low = divmod(value, _DIGITS)
        parts.append(f"{low:01000d}")
    parts.append(str(value))
    return sign + "".join(reversed(parts))


def _placeholder(value: Any, problems: list[str], why: str) -> str:
    problems.append(f"{type(value).__qualname__}: {why}")
    return f"<unserializable {type(value).__qualname__}>"


def _convert(value: Any, problems: list[str], depth: int, active: set[int]) -> Any:
    try:
        return _convert_any(value, problems, depth, active)
    except Exception as exc:  # a failing __str__, a container changed meanwhile...
        return _placeholder(value, problems, f"conversion failed ({type(exc).__name__})")


def _convert_any(value: Any, problems: list[str], depth: int, active: set[int]) -> Any:
    tp = type(value)
    if tp is str:
        return value if value.isascii() else clean_text(value)
    if tp is int:
        return value if -MAX_EXACT_INT <= value <= MAX_EXACT_INT else _int_text(value)
    if tp in _PLAIN:
        return value
    if tp is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= MAX_DEPTH:
        return _placeholder(value, problems, f"nested deeper than {MAX_DEPTH} levels")
    if tp is dict:  # the common containers before the (slower) abstract-class checks
        return _container(value, problems, depth, active, _convert_mapping)
    if tp is list:
        return _container(value, problems, depth, active, _convert_list)
    if isinstance(value, Mapping):
        return _container(value, problems, depth, active, _convert_mapping)
    if isinstance(value, (list, tuple)):
        return _container(value, problems, depth, active, _convert_list)
    if isinstance(value, (set, frozenset)):
        return _container(value, problems, depth, active, _convert_set)
    if isinstance(value, enum.Enum):
        return _convert(value.value, problems, depth + 1, active)
    if isinstance(value, (str, int)):  # subclasses (IntFlag handled above as Enum)
        return _convert_any(str.__str__(value) if isinstance(value, str) else int(value), problems, depth, active)
    if isinstance(value, float):
        return _convert(float(value), problems, depth, active)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return clean_text(value.isoformat())
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (uuid.UUID, PurePath, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network)):
        return clean_text(str(value))
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
        out[_key(key)] = _convert(item, problems, depth, active)
    return out


def _key(key: Any) -> str:
    if type(key) is str:
        return key if key.isascii() else clean_text(key)
    if type(key) is int and -MAX_EXACT_INT <= key <= MAX_EXACT_INT:
        return str(key)
    try:
        return clean_text(str(key))
    except Exception:  # a key whose __str__ raises
        return f"<unserializable {type(key).__qualname__}>"


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
        tp = type(item)
        if (tp is str and item.isascii()) or (tp is int and -MAX_EXACT_INT <= item <= MAX_EXACT_INT) or tp in _PLAIN:
            out[key if key.isascii() else clean_text(key)] = item
        else:
            out[_key(key)] = _convert(item, problems, 1, active)
    return out, problems


def to_json_value(value: Any) -> tuple[Any, list[str]]:
    """``value`` converted by the same rules (any value, at any place of an event), and the problems met."""
    problems: list[str] = []
    return _convert(value, problems, 0, set()), problems
