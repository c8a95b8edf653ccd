"""Exporters: the contract every backend integration implements, and the registry that finds them by name.

Built-in exporters are imported only when configured, so ``import evlog`` stays light (no requests, no
OpenTelemetry). Third-party packages add exporters through the ``evlog.exporters`` entry-point group.
"""

from __future__ import annotations

from evlog._errors import EventRejected
from evlog.exporters._base import Batch, Exporter, ExportResult, ExportStatus, NoOptions
from evlog.exporters._registry import available_exporters, load_exporter_class
from evlog.exporters._result import ExportOutcomes

__all__ = [
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
