"""``debug``: the effective configuration logged at configure, then one record per export outcome.

Outcomes are observed by wrapping each exporter's ``export`` on the instance, so the engine (``_delivery``)
needs no debug branch and costs nothing when debug is off. Records go to the ``evlog`` logger; when nothing
handles it, a stderr handler is added, since ``EVLOG_DEBUG=1`` in an app without logging set up must still show
something.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping
from typing import Any

from evlog._config import Config
from evlog._guard import guarded, internal_logger
from evlog.exporters._base import Batch, ExportResult

__all__ = ["log_configuration", "watch_outcomes"]

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


def watch_outcomes(config: Config) -> None:
    """With ``debug`` on, log each ``export()`` outcome of every exporter: name, events, status, message."""
    if not config.debug:
        return
    for exporter in config.exporters:
        original = exporter.export

        @functools.wraps(original)
        def export(batch: Batch, _original: Any = original, _name: str = exporter.name) -> ExportResult:
            result: ExportResult = _original(batch)
            with guarded():
                internal_logger.debug(
                    "evlog: export to %s: %d event(s) -> %s%s",
                    _name,
                    len(batch),
                    result.status.name.lower(),
                    f": {result.message}" if result.message else "",
                )
            return result

        exporter.export = export  # type: ignore[method-assign]
