"""``otel``: each event becomes one OpenTelemetry ``LogRecord``, emitted through the logs API.

This puts evlog events in the same pipeline as the app's logs and traces, usually shipped by OTLP to a
Collector, which then does the fan-out, buffering and routing. The provider is the one given in code, else the
app's global one, else one evlog builds from the standard ``OTEL_*`` variables (and only that one is flushed and
shut down by evlog). Values are sanitised here, not left to the SDK: the OTLP encoder drops a whole batch for
one value it cannot encode, and the SDK evicts the *oldest* attributes past its limit, which would otherwise be
the semantic-convention keys backends index.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from evlog._errors import ConfigError
from evlog._event import Event, ExceptionInfo
from evlog._version import __version__
from evlog.exporters import _otel_api
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes

__all__ = ["OtelExporter", "OtelOptions"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_INT64 = (-(2**63), 2**63 - 1)
_DEFAULT_ATTRIBUTE_LIMIT = 128  # the SDK's and the spec's default


def _positive_or_none(_inst: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1 or unset, got {value!r}")


@attrs.frozen
class OtelOptions:
    #: ``flatten``: each ``data`` leaf is its own attribute with a dotted key (``evlog.data.order.id``), as
    #: semantic conventions prefer and most backends index best. ``map``: ``data`` is one map-valued attribute.
    data_mode: Literal["flatten", "map"] = attrs.field(
        default="flatten", validator=attrs.validators.in_(("flatten", "map"))
    )
    #: Prefix of evlog's own attribute keys (``category``, ``labels``, ``data``, ``value``); OpenTelemetry asks
    #: apps not to use semantic-convention namespaces for their own keys.
    attribute_prefix: str = "evlog."
    #: Instrumentation scope name of the records.
    logger_name: str = "evlog"
    #: Events per ``export`` call.
    max_batch_size: int = attrs.field(default=512, validator=attrs.validators.ge(1))
    #: Attributes per record. Unset: ``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT``, else ``OTEL_ATTRIBUTE_COUNT_LIMIT``,
    #: else 128; never more than an SDK provider's own limit. Past it, ``data`` attributes are dropped (counted).
    max_attributes: int | None = attrs.field(default=None, validator=_positive_or_none)
    #: Characters per string value. Unset: ``OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT``, else
    #: ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, else no limit. Longer strings are truncated (counted).
    max_value_length: int | None = attrs.field(default=None, validator=_positive_or_none)
    #: Nesting levels of ``data`` kept as structure; deeper values are sent as a JSON string.
    max_depth: int = attrs.field(default=8, validator=attrs.validators.ge(1))


def _env_int(*names: str) -> int | None:
    for name in names:
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                value = int(raw)
            except ValueError:
                continue
            if value > 0:
                return value
    return None


def _unix_nanos(moment: _dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _stacktrace(info: ExceptionInfo) -> str:
    """The traceback text with its chain first, in the order Python prints it."""
    parts: list[str] = []
    if info.cause is not None:
        parts += [_stacktrace(info.cause), "\nThe above exception was the direct cause of the following exception:\n"]
    elif info.context is not None:
        parts += [_stacktrace(info.context), "\nDuring handling of the above exception, another exception occurred:\n"]
    own = "\n".join(info.stacktrace)
    if not own:
        own = f"{info.exception_type}: {info.exception_msg}" if info.exception_msg else info.exception_type
    parts.append(own)
    return "\n".join(parts)


class _Counters:
    __slots__ = ("attributes_dropped", "key_collisions", "values_converted", "values_truncated")

    def __init__(self) -> None:
        self.attributes_dropped = 0
        self.values_converted = 0
        self.values_truncated = 0
        self.key_collisions = 0


class OtelExporter(Exporter):
    """Emits one ``LogRecord`` per event; see ``docs/exporters/otel.md`` for the field mapping.

    ``logger_provider`` (keyword only, code only: it cannot come from the environment) is the OpenTelemetry
    ``LoggerProvider`` to use; evlog never flushes or shuts down a provider it did not build.
    """

    name = "otel"
    Options = OtelOptions
    options: OtelOptions
    captures_trace_context = True

    def __init__(self, options: OtelOptions | None = None, /, *, logger_provider: Any = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._given_provider = logger_provider
        self._provider: Any = None
        self._logger: Any = None
        self._owned: _otel_api.RecordCollector | None = None
        self._source = ""
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._emitted = 0
        self._limits: tuple[int, int | None] = (_DEFAULT_ATTRIBUTE_LIMIT, None)
        self._closed = False
        if logger_provider is None and _otel_api.app_logger_provider() is None:
            _otel_api.check_environment()  # a misconfigured OTEL_* fails configure(), not every export

    # --- provider ----------------------------------------------------------------------------------------

    def _resolve(self) -> Any:
        """The logger, resolving the provider on first use so an app may set its global provider after
        ``evlog.configure()``."""
        with self._lock:
            if self._logger is not None:
                return self._logger
            if self._given_provider is not None:
                provider, source = self._given_provider, "given"
            else:
                provider = _otel_api.app_logger_provider()
                source = "global"
                if provider is None:
                    provider, self._owned = _otel_api.build_logger_provider(resource_attributes=self._app_resource())
                    source = "built"
            self._provider, self._source = provider, source
            self._logger = provider.get_logger(self.options.logger_name, version=__version__)
            return self._logger

    @property
    def provider_source(self) -> str:
        """``given``, ``global`` or ``built`` once the first batch was exported; ``""`` before."""
        return self._source

    def _attribute_limit(self) -> int:
        limit = self.options.max_attributes or (
            _env_int("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT") or _DEFAULT_ATTRIBUTE_LIMIT
        )
        sdk_limit = _otel_api.attribute_limit(self._provider)
        return min(limit, sdk_limit) if sdk_limit else limit

    def _value_limit(self) -> int | None:
        return self.options.max_value_length or _env_int(
            "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
        )

    # --- values ------------------------------------------------------------------------------------------

    def _text(self, value: str, limit: int | None) -> str:
        if limit is not None and len(value) > limit:
            self._counters.values_truncated += 1
            return value[:limit]
        return value

    def _json(self, value: Any, limit: int | None) -> str:
        self._counters.values_converted += 1
        return self._text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str), limit)

    def _leaf(self, value: Any, limit: int | None, depth: int) -> Any:
        """An attribute value every supported SDK and OTLP encoder accepts, or None to leave the key out.

        Arrays must be homogeneous primitives (older SDKs empty mixed ones); ints must fit int64 (the encoder
        drops them); ``None`` inside maps broke encoders before 1.43. Anything else becomes a JSON string.
        """
        kind = type(value)
        if kind is str:
            return self._text(value, limit)
        if kind is bool or kind is float:
            return value
        if kind is int:
            if _INT64[0] <= value <= _INT64[1]:
                return value
            self._counters.values_converted += 1
            return str(value)
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            kinds = {type(item) for item in value}
            if not value or (len(kinds) == 1 and kinds <= {str, bool, float, int}):
                if kinds == {int} and not all(_INT64[0] <= item <= _INT64[1] for item in value):
                    return self._json(value, limit)
                if kinds == {str}:
                    return tuple(self._text(item, limit) for item in value)
                return tuple(value)
            return self._json(value, limit)
        if isinstance(value, Mapping):
            if depth >= self.options.max_depth:
                return self._json(value, limit)
            out = {}
            for key, item in value.items():
                clean = self._leaf(item, limit, depth + 1)
                if clean is not None and str(key):
                    out[str(key)] = clean
            return out
        self._counters.values_converted += 1
        return self._text(str(value), limit)

    def _flatten(self, key: str, value: Any, limit: int | None, depth: int, out: dict[str, Any]) -> None:
        if isinstance(value, Mapping) and depth < self.options.max_depth:
            for sub, item in value.items():
                self._flatten(f"{key}.{sub}", item, limit, depth + 1, out)
            return
        clean = self._leaf(value, limit, depth)
        if clean is None:
            return
        if key in out:
            self._counters.key_collisions += 1  # {"a.b": 1, "a": {"b": 2}}: the later value wins
        out[key] = clean

    def _attributes(self, event: Event) -> dict[str, Any]:
        """Data first, evlog's keys next, semantic-convention keys last: the SDK evicts the oldest keys, so
        even a provider with a lower limit than ours loses data before it loses ``exception.*``."""
        limit = self._limits[1]
        prefix = self.options.attribute_prefix
        data: dict[str, Any] = {}
        if event.data:
            if self.options.data_mode == "map":
                mapped = self._leaf(event.data, limit, 0)
                if mapped:
                    data[f"{prefix}data"] = mapped
            else:
                self._flatten(f"{prefix}data", event.data, limit, 0, data)

        fixed: dict[str, Any] = {}
        if event.category is not None:
            fixed[f"{prefix}category"] = self._text(event.category, limit)
        if event.labels:
            fixed[f"{prefix}labels"] = tuple(self._text(label, limit) for label in event.labels)
        if event.value is not None:
            fixed[f"{prefix}value"] = self._leaf(event.value, limit, 0)
        semconv: dict[str, Any] = {"log.record.uid": event.event_id}
        if event.user is not None and event.user.id is not None:
            semconv["user.id"] = self._text(str(event.user.id), limit)  # semantic conventions: a string
        if event.session_id is not None:
            semconv["session.id"] = self._text(event.session_id, limit)
        exc = event.exception
        if exc is not None:
            semconv["exception.type"] = self._text(exc.exception_type, limit)
            if exc.exception_msg:
                semconv["exception.message"] = self._text(exc.exception_msg, limit)
            semconv["exception.stacktrace"] = self._text(_stacktrace(exc), limit)
            if exc.source_file is not None:
                semconv["code.file.path"] = self._text(exc.source_file, limit)
            if exc.source_line is not None:
                semconv["code.line.number"] = exc.source_line
            if exc.source_function is not None:
                semconv["code.function.name"] = self._text(exc.source_function, limit)

        cap = self._limits[0]
        excess = len(data) + len(fixed) + len(semconv) - cap
        if excess > 0:
            # One slot goes to the count of what was left out, so the backend can see the record is partial.
            dropped = min(len(data), excess + 1)
            data = dict(list(data.items())[: len(data) - dropped])
            fixed = {f"{prefix}dropped_attributes": dropped, **fixed}
            overflow = len(data) + len(fixed) + len(semconv) - cap
            if overflow > 0:  # a tiny limit: evlog's own keys go next, semantic conventions stay
                kept = list(fixed.items())[overflow:]
                dropped += min(overflow, len(fixed))
                fixed = dict(kept)
            self._counters.attributes_dropped += dropped
        return {**data, **fixed, **semconv}

    # --- export ------------------------------------------------------------------------------------------

    def _app_resource(self) -> dict[str, str]:
        """The app's fields as the semantic conventions name them, for a provider evlog builds."""
        app = self.app
        found = {
            "service.name": app.service,
            "service.version": app.release,
            "deployment.environment.name": app.environment,
        }
        return {key: value for key, value in found.items() if value}

    def export(self, batch: Batch) -> ExportResult:
        outcomes = ExportOutcomes(batch)
        try:
            logger = self._resolve()
        except ConfigError as exc:
            outcomes.refuse(batch.events, f"cannot build an OpenTelemetry logger provider: {exc}")
            return outcomes.result()
        observed = time.time_ns()
        # Read once per batch, not per event (each reads the environment).
        self._limits = (self._attribute_limit(), self._value_limit())
        collector = self._owned
        emitted: list[Event] = []
        for event in batch.events:
            try:
                _otel_api.emit(
                    logger,
                    timestamp=_unix_nanos(event.timestamp),
                    observed_timestamp=observed,
                    context=_otel_api.trace_context(event.trace),
                    level=event.level,
                    body=event.message if event.message is not None else event.name,
                    event_name=event.name,
                    attributes=self._attributes(event),
                )
            except Exception as exc:
                outcomes.reject(event, f"the OpenTelemetry SDK refused the record: {type(exc).__name__}: {exc}")
            else:
                emitted.append(event)
        if collector is not None and emitted:
            # A provider evlog built: the records of this batch go to the SDK's exporters in one call each,
            # and their verdict is the batch's (the OTLP exporters retry transient trouble themselves, within
            # OTEL_EXPORTER_OTLP_TIMEOUT, so a failure they report is final).
            problem = collector.export_collected()
            if problem is not None:
                outcomes.refuse(emitted, f"the OpenTelemetry exporter did not deliver: {problem}")
                return outcomes.result()
        outcomes.accept(emitted)
        self._emitted += len(emitted)
        return outcomes.result()

    def _sdk_failures(self) -> int:
        return self._owned.failed if self._owned is not None else 0

    def force_flush(self, timeout: float) -> bool:
        """Nothing to do for a provider evlog built (each export delivers its records before it returns: the
        outcome, sent or failed, is already in the stats); a given or global provider is the app's to flush."""
        return True

    def shutdown(self, timeout: float) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owned is not None and self._provider is not None:
            self._provider.shutdown()

    def reset_after_fork(self) -> None:
        # The SDK re-creates its batch processor's thread in the child itself; only our lock is stale.
        self._lock = threading.Lock()

    def stats(self) -> Mapping[str, Any]:
        counters = self._counters
        return {
            "provider": self._source,
            "records_emitted": self._emitted,
            "attributes_dropped": counters.attributes_dropped,
            "values_converted": counters.values_converted,
            "values_truncated": counters.values_truncated,
            "key_collisions": counters.key_collisions,
            "sdk_export_failures": self._sdk_failures(),
        }
