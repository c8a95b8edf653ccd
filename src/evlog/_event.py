"""The event model: plain immutable data, no I/O and no serialization.

Events are built once on the background router and shared by every exporter, so they are frozen: fan-out costs
a reference, never a copy, and no exporter can change what another one sees.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from enum import Enum
from typing import Any, Union

import attrs

from evlog._errors import InvalidEventError

__all__ = ["Event", "ExceptionInfo", "Level", "TraceContext", "User", "Value"]

#: What ``value`` may hold: a number or a string (Statsig's ``value``, AdCP's conversion value).
Value = Union[int, float, str]  # noqa: UP007 - a runtime alias must work on 3.9-style unions too


class Level(str, Enum):
    """Severity of an event, in increasing order. Members compare equal to their lower-case names."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value

    @property
    def severity(self) -> int:
        """0 for debug up to 4 for critical, for comparisons and mappings to numeric scales."""
        return _SEVERITY[self]


_SEVERITY = {level: i for i, level in enumerate(Level)}


def _opt_str(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value is not None and type(value) is not str:
            raise InvalidEventError(f"User.{name} must be a string or None, got {type(value).__name__} {value!r:.60}")

    return check


def _id(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None and type(value) not in (str, int):  # bool is an int subclass: refused by type()
        raise InvalidEventError(
            f"User.id must be a string, an integer or None, got {type(value).__name__} {value!r:.60}"
        )


def _str_mapping(name: str, *, str_values: bool = False) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if not isinstance(value, Mapping):
            raise InvalidEventError(f"User.{name} must be a mapping, got {type(value).__name__}")
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidEventError(f"User.{name} keys must be strings, got {type(key).__name__} {key!r:.60}")
            if str_values and type(item) is not str:
                raise InvalidEventError(
                    f"User.{name}[{key!r}] must be a string, got {type(item).__name__} {item!r:.60}"
                )

    return check


def _frozen_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value) if value else {}


@attrs.frozen(slots=True)
class User:
    """Who the event is about. Every field is optional; exporters send what their backend understands.

    ``private_attributes`` are for processors and local exporters only: no network exporter sends them.
    ``custom_ids`` maps an id type (``stableID``, ``device_id``, ``rampid``...) to its value.
    """

    #: A string or an integer (database ids often are); each exporter sends it in its backend's form (Statsig's
    #: ``userID`` is a string, so an integer is sent as its decimal text there).
    id: str | int | None = attrs.field(default=None, validator=_id)
    email: str | None = attrs.field(default=None, validator=_opt_str("email"), repr=False)
    phone: str | None = attrs.field(default=None, validator=_opt_str("phone"), repr=False)
    ip: str | None = attrs.field(default=None, validator=_opt_str("ip"), repr=False)
    user_agent: str | None = attrs.field(default=None, validator=_opt_str("user_agent"))
    country: str | None = attrs.field(default=None, validator=_opt_str("country"))
    locale: str | None = attrs.field(default=None, validator=_opt_str("locale"))
    app_version: str | None = attrs.field(default=None, validator=_opt_str("app_version"))
    custom: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict, validator=_str_mapping("custom"))
    custom_ids: dict[str, str] = attrs.field(
        factory=dict, converter=_frozen_dict, validator=_str_mapping("custom_ids", str_values=True)
    )
    private_attributes: dict[str, Any] = attrs.field(
        factory=dict, converter=_frozen_dict, validator=_str_mapping("private_attributes"), repr=False
    )


@attrs.frozen(slots=True)
class ExceptionInfo:
    """An exception as backends store it (the session server's exception fields are the common model).

    ``stacktrace`` is a list of lines, each without its trailing newline. ``source_*`` name the innermost frame
    of the app's own code. The chain is kept: ``cause`` is ``__cause__`` (``raise ... from``), ``context`` is
    ``__context__`` (raised while handling), ``exceptions`` are the members of an exception group.
    """

    exception_type: str
    exception_msg: str = ""
    stacktrace: tuple[str, ...] = ()
    source_file: str | None = None
    source_line: int | None = None
    source_function: str | None = None
    cause: ExceptionInfo | None = None
    context: ExceptionInfo | None = None
    exceptions: tuple[ExceptionInfo, ...] = ()


@attrs.frozen(slots=True)
class TraceContext:
    """The OpenTelemetry span that was current when the event was logged (captured only when needed)."""

    trace_id: int
    span_id: int
    trace_flags: int = 0


@attrs.frozen(slots=True)
class Event:
    """One analytics or diagnostic event.

    Built by the library from ``log_event``'s arguments; processors may return a modified copy made with
    ``attrs.evolve``. ``data`` holds JSON-compatible values only (the conversion rules are applied before
    any processor or exporter sees the event). ``timestamp`` is timezone-aware UTC. ``event_id`` is unique and
    stable across retries and exporters, so backends can deduplicate.
    """

    name: str
    timestamp: _dt.datetime
    event_id: str
    level: Level = Level.INFO
    category: str | None = None
    labels: tuple[str, ...] = ()
    message: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    user: User | None = None
    session_id: str | None = None
    value: Value | None = None
    exception: ExceptionInfo | None = None
    trace: TraceContext | None = None

    @property
    def timestamp_ms(self) -> int:
        """Milliseconds since the Unix epoch, as several backends want it."""
        return int(self.timestamp.timestamp() * 1000)
