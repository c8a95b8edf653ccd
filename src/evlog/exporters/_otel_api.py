"""The one place that touches OpenTelemetry's still-private logs API (``opentelemetry._logs``,
``opentelemetry.sdk._logs``).

OpenTelemetry keeps the Python logs signal in underscore modules that "make no backward compatibility
guarantees" and renamed or removed classes in minor releases (1.39 split ``LogRecord``, 1.44 removed the Events
API). Everything version-dependent lives here so a future rename is a change to this file only; the exporter
calls ``emit`` with keyword arguments and never subclasses an SDK exporter or processor, the surface that
broke most often. Supported: opentelemetry-sdk 1.39 up to (not including) 2.0.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import trace as _trace
from opentelemetry._logs import NoOpLoggerProvider, SeverityNumber, get_logger_provider, set_logger_provider
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from evlog._errors import ConfigError
from evlog._event import Level, TraceContext

__all__ = [
    "SEVERITY",
    "BatchLogRecordProcessor",
    "CountingExporter",
    "InMemoryLogRecordExporter",
    "LoggerProvider",
    "RecordCollector",
    "SimpleLogRecordProcessor",
    "app_logger_provider",
    "attribute_limit",
    "build_logger_provider",
    "check_environment",
    "emit",
    "set_global_logger_provider",
    "trace_context",
]

try:  # 1.39 renamed Log* to LogRecord*; the old names warn on use.
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
except ImportError:  # pragma: no cover - SDK < 1.39
    from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef]
        InMemoryLogExporter as InMemoryLogRecordExporter,
    )

#: The data model's short names at the lowest number of each range, as the SDK maps stdlib levels.
SEVERITY: Mapping[Level, tuple[Any, str]] = {
    Level.DEBUG: (SeverityNumber.DEBUG, "DEBUG"),
    Level.INFO: (SeverityNumber.INFO, "INFO"),
    Level.WARNING: (SeverityNumber.WARN, "WARN"),
    Level.ERROR: (SeverityNumber.ERROR, "ERROR"),
    Level.CRITICAL: (SeverityNumber.FATAL, "FATAL"),
}

_ENV_SOURCE = "OpenTelemetry environment variables"
_HTTP_EXPORTER = "opentelemetry.exporter.otlp.proto.http._log_exporter"
_GRPC_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc._log_exporter"


def app_logger_provider() -> Any | None:
    """The global provider when the app installed one; None while it is the API's proxy or no-op default."""
    provider = get_logger_provider()
    if isinstance(provider, NoOpLoggerProvider) or type(provider).__name__ == "ProxyLoggerProvider":
        return None
    return provider


def set_global_logger_provider(provider: Any) -> None:
    """Install the app-wide provider (once per process, as the API allows); for apps and tests."""
    set_logger_provider(provider)


def attribute_limit(provider: Any) -> int | None:
    """The per-record attribute count the SDK provider enforces (it evicts the oldest past it), if readable."""
    limits = getattr(provider, "_log_record_limits", None)
    value = getattr(limits, "max_attributes", None)
    return value if isinstance(value, int) and value > 0 else None


def _otlp_exporter_class(environ: Mapping[str, str]) -> Any:
    var = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
    if not environ.get(var):
        var = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = (environ.get(var) or "http/protobuf").strip()
    if protocol == "http/protobuf":
        module, package = _HTTP_EXPORTER, "opentelemetry-exporter-otlp-proto-http (pip install 'evlog[otlp]')"
    elif protocol == "grpc":
        module, package = _GRPC_EXPORTER, "opentelemetry-exporter-otlp-proto-grpc"
    else:
        raise ConfigError(
            f"protocol {protocol!r} is not supported by the Python SDK's log exporters; use 'http/protobuf' or 'grpc'",
            path=var,
            source=_ENV_SOURCE,
        )
    try:
        return importlib.import_module(module).OTLPLogExporter
    except ImportError:
        raise ConfigError(
            f"OTLP over {protocol} needs the package {package}, which is not installed",
            path=var,
            source=_ENV_SOURCE,
        ) from None


def _named_exporter_class(name: str) -> Any:
    found = list(entry_points(group="opentelemetry_logs_exporter", name=name))
    if not found:
        raise ConfigError(
            f"no OpenTelemetry log exporter named {name!r} is installed "
            "(entry-point group 'opentelemetry_logs_exporter'); 'otlp', 'console' and 'none' are always available",
            path="OTEL_LOGS_EXPORTER",
            source=_ENV_SOURCE,
        )
    return found[0].load()


def _exporter_classes(environ: Mapping[str, str]) -> list[Any]:
    names = [part.strip() for part in environ.get("OTEL_LOGS_EXPORTER", "otlp").split(",") if part.strip()]
    return [
        _otlp_exporter_class(environ) if name == "otlp" else _named_exporter_class(name)
        for name in names or ["otlp"]
        if name != "none"
    ]


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise ``ConfigError`` at configure time if the provider evlog would build cannot be built."""
    _exporter_classes(os.environ if environ is None else environ)


def build_logger_provider(
    environ: Mapping[str, str] | None = None, resource_attributes: Mapping[str, str] | None = None
) -> tuple[Any, RecordCollector]:
    """A private provider from the standard ``OTEL_*`` variables: ``Resource.create()`` (service name and
    resource attributes), and the exporters ``OTEL_LOGS_EXPORTER`` names (``otlp`` by default, its transport
    chosen by ``OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL``, http/protobuf unless told otherwise).

    No batch processor: evlog already batches, so the provider's only processor is the SDK's synchronous one
    feeding a ``RecordCollector``, and evlog's worker hands each of its batches to the SDK exporters in one
    call (``RecordCollector.export_collected``). One pipeline, not two, and the exporters' verdict becomes
    the batch's outcome. The provider is not made global and registers no exit hook: evlog shuts it down
    after its last export.
    """
    environ = os.environ if environ is None else environ
    # Exporters take no arguments: each configures itself from OTEL_EXPORTER_OTLP_* (endpoint, headers...).
    collector = RecordCollector([CountingExporter(cls()) for cls in _exporter_classes(environ)])
    # The SDK merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, then the given attributes over them: evlog's
    # own release / environment / service options, when set, are what the app said most directly.
    resource = Resource.create(dict(resource_attributes or {}))
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    # The SDK's own processor turns each emitted record into what exporters take, whatever the SDK version.
    provider.add_log_record_processor(SimpleLogRecordProcessor(collector))  # type: ignore[arg-type]
    return provider, collector


class RecordCollector:
    """Duck-typed log exporter behind a ``SimpleLogRecordProcessor``: keeps the records emitted during one
    evlog export, which ``export_collected`` then sends to the real exporters in one call each."""

    def __init__(self, exporters: list[CountingExporter]) -> None:
        self.exporters = exporters
        self._records: list[Any] = []

    def export(self, batch: Any) -> Any:
        self._records.extend(batch)
        return None

    def collected(self) -> int:
        return len(self._records)

    def export_collected(self) -> str | None:
        """Send what was collected (and forget it); None when every exporter took it, else what went wrong."""
        records, self._records = self._records, []
        problems: list[str] = []
        for exporter in self.exporters:
            failed_before = exporter.failed
            try:
                exporter.export(records)
            except Exception as exc:
                problems.append(f"{type(exporter.inner).__name__} raised {type(exc).__name__}: {exc}")
            else:
                if exporter.failed != failed_before:
                    problems.append(f"{type(exporter.inner).__name__} reported a failed export")
        return "; ".join(problems) or None

    @property
    def failed(self) -> int:
        return sum(exporter.failed for exporter in self.exporters)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(bool(exporter.force_flush(timeout_millis)) for exporter in self.exporters)

    def shutdown(self) -> None:
        for exporter in self.exporters:
            exporter.shutdown()


class CountingExporter:
    """Wraps an SDK log exporter to count the records it failed to deliver.

    The batch processor discards failed batches and still reports ``force_flush()`` as successful, so without
    this count a dead Collector would look healthy in ``evlog.stats()``. It delegates rather than subclasses:
    the SDK's exporter base class and its record types changed in 1.39 and 1.44, plain delegation did not.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = 0

    def export(self, batch: Any) -> Any:
        try:
            result = self.inner.export(batch)
        except Exception:
            self.failed += len(batch)
            raise
        if getattr(result, "name", "SUCCESS") != "SUCCESS":
            self.failed += len(batch)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def trace_context(trace: TraceContext | None) -> Context:
    """A context holding the span captured at ``log_event`` (an empty one when there was none): the export
    thread's own context must never leak into the record."""
    if trace is None:
        return Context()
    span_context = _trace.SpanContext(
        trace_id=trace.trace_id,
        span_id=trace.span_id,
        is_remote=False,
        trace_flags=_trace.TraceFlags(trace.trace_flags),
    )
    return _trace.set_span_in_context(_trace.NonRecordingSpan(span_context), Context())


def emit(
    logger: Any,
    *,
    timestamp: int,
    observed_timestamp: int,
    context: Context,
    level: Level,
    body: str,
    event_name: str,
    attributes: Mapping[str, Any],
) -> None:
    """One ``Logger.emit`` with keyword arguments (accepted since 1.38, ``event_name`` included)."""
    severity_number, severity_text = SEVERITY[level]
    logger.emit(
        timestamp=timestamp,
        observed_timestamp=observed_timestamp,
        context=context,
        severity_number=severity_number,
        severity_text=severity_text,
        body=body,
        attributes=dict(attributes),
        event_name=event_name,
    )
