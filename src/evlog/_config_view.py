"""The effective configuration as rows a person can read: option, value, source; secrets masked.

``evlog config`` prints these rows and ``debug`` logs them at configure, so what the command shows and what the
library logs are one rendering. A secret (an options field declared ``repr=False``) never appears whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from evlog._config import DEFAULTS, Config, Kind, option_specs, secret_fields

__all__ = ["Row", "mask", "rows", "to_text"]


@attrs.frozen
class Row:
    """One option's path (``flush_interval``, ``exporters.statsig.api_key``), shown value, and source."""

    path: str
    value: Any
    source: str
    secret: bool = False


def mask(secret: str) -> str:
    """``***`` and at most the last 4 characters, fewer for short secrets, so a key can be told apart from
    another without being disclosed."""
    shown = 4 if len(secret) >= 16 else 2 if len(secret) >= 8 else 0
    return "***" + (secret[-shown:] if shown else "")


def _plain(value: Any) -> Any:
    """A JSON-friendly rendering: callables by qualified name, tuples as lists."""
    if callable(value):
        return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def rows(config: Config, where: Mapping[str, str]) -> list[Row]:
    """Every top-level option, then each exporter's options, with where each value came from."""
    out: list[Row] = []
    for spec in option_specs():
        if spec.kind is Kind.EXPORTERS:
            out.append(Row("exporters", [e.name for e in config.exporters], where.get("exporters", DEFAULTS)))
            continue
        out.append(Row(spec.name, _plain(getattr(config, spec.name)), where.get(spec.name, DEFAULTS)))
    for exporter in config.exporters:
        options = getattr(exporter, "options", None)
        if options is None or not attrs.has(type(options)):
            out.append(Row(f"exporters.{exporter.name}", repr(exporter), where.get(f"exporters.{exporter.name}", "")))
            continue
        secrets = set(secret_fields(options))
        for field in attrs.fields(type(options)):
            path = f"exporters.{exporter.name}.{field.name}"
            value = getattr(options, field.name)
            secret = field.name in secrets and isinstance(value, str)
            shown = mask(value) if secret else _plain(value)
            source = where.get(path) or where.get(f"exporters.{exporter.name}", DEFAULTS)
            out.append(Row(path, shown, source, secret))
    return out


def to_text(table: list[Row]) -> str:
    """Aligned lines ``path = value    (source)``."""
    width = max((len(r.path) for r in table), default=0)
    lines = []
    for r in table:
        value = "unset" if r.value is None else str(r.value).lower() if isinstance(r.value, bool) else repr(r.value)
        lines.append(f"{r.path.ljust(width)} = {value}  ({r.source})")
    return "\n".join(lines)
