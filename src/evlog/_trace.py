"""Capturing the active OpenTelemetry span in the app's thread, for exporters that link events to traces.

Imported only when such an exporter is configured: the worker thread that exports has no span of its own, so
the span must be read at ``log_event`` time.
"""

from __future__ import annotations

from evlog._event import TraceContext

__all__ = ["current_trace_context"]

try:
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - opentelemetry-api is a dependency of the otel exporter
    _otel_trace = None  # type: ignore[assignment]


def current_trace_context() -> TraceContext | None:
    """The current span's ids, or None when there is no valid span."""
    if _otel_trace is None:
        return None
    ctx = _otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return TraceContext(trace_id=ctx.trace_id, span_id=ctx.span_id, trace_flags=int(ctx.trace_flags))
