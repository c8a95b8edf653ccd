"""``debug``: the effective configuration logged at configure, then one record per export outcome.

Outcomes are observed by wrapping each exporter's ``export`` on the instance, so the engine (``_delivery``)
needs no debug branch and costs nothing when debug is off. Records go to the ``evlog`` logger; when nothing
handles it, a stderr handler is added, since ``EVLOG_DEBUG=1`` in an app without logging set up must still show
something.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from evlog._config import Config
from evlog._guard import guarded, internal_logger
from evlog.exporters._base import Batch, ExportResult

__all__ = ["log_configuration", "log_outcome"]

_handler: logging.Handler | None = None


def _ensure_handler() -> None:
    global _handler
    if internal_logger.isEnabledFor(logging.DEBUG) and internal_logger.hasHandlers():
        return
    internal_logger.setLevel(logging.DEBUG)
    if _handler is None and not internal_logger.hasHandlers():
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("%(message)s"))
        internal_logger.addHandler(_handler)


def log_configuration(config: Config, where: Mapping[str, str]) -> None:
    """One DEBUG record with every option, its value and its source (secrets masked), as ``evlog config``."""
    if config.debug:
        _ensure_handler()
    if not internal_logger.isEnabledFor(logging.DEBUG):
        return
    from evlog._config_view import rows, to_text

    with guarded():
        file = next((s for p, s in where.items() if s not in ("defaults", "configure()") and "environ" not in s), None)
        internal_logger.debug(
            "evlog: configured (config file: %s)\n%s", file or "none found or none used", to_text(rows(config, where))
        )


def log_outcome(name: str, batch: Batch, result: ExportResult) -> None:
    """With ``debug`` on, each ``export()`` outcome: exporter, events, status and the backend's message."""
    with guarded():
        internal_logger.debug(
            "evlog: export to %s: %d event(s) -> %s%s",
            name,
            len(batch),
            result.status.name.lower(),
            f": {result.message}" if result.message else "",
        )
