"""Exporters: the contract every backend integration implements, and the registry that finds them by name.

Built-in exporters are imported only when configured, so ``import evlog`` stays light (no requests, no
OpenTelemetry). Third-party packages add exporters through the ``evlog.exporters`` entry-point group.
"""

from __future__ import annotations

from evlog.exporters._base import Batch, Exporter, ExportResult, ExportStatus, NoOptions
from evlog.exporters._registry import available_exporters, load_exporter_class

__all__ = [
    "Batch",
    "ExportResult",
    "ExportStatus",
    "Exporter",
    "NoOptions",
    "available_exporters",
    "load_exporter_class",
]
