"""Exporters: the contract every backend integration implements, and the registry that finds them by name.

An exporter records each event's fate in ``ExportOutcomes``, which turns them into the ``ExportResult`` by the
rules every exporter shares; an event the backend would refuse is refused before sending with ``EventRejected``.

Built-in exporters are imported only when configured, so ``import evlog`` stays light (no requests, no
OpenTelemetry). Third-party packages add exporters through the ``evlog.exporters`` entry-point group.
"""

from __future__ import annotations

from evlog._errors import EventRejected
from evlog.exporters._base import AppInfo, Batch, Exporter, ExportResult, ExportStatus, NoOptions
from evlog.exporters._registry import available_exporters, load_exporter_class
from evlog.exporters._result import ExportOutcomes

__all__ = [
    "AppInfo",
    "Batch",
    "EventRejected",
    "ExportOutcomes",
    "ExportResult",
    "ExportStatus",
    "Exporter",
    "NoOptions",
    "available_exporters",
    "load_exporter_class",
]
