"""Finding exporter classes by name: built-ins first, then the ``evlog.exporters`` entry-point group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evlog._errors import ConfigError, ExporterError
from evlog._options import import_target as _import_target

if TYPE_CHECKING:
    from evlog.exporters._base import Exporter

__all__ = ["ENTRY_POINT_GROUP", "available_exporters", "load_exporter_class"]

ENTRY_POINT_GROUP = "evlog.exporters"

#: The one registration of a built-in exporter. Everything else follows from it or is checked against it
#: (tests/test_exporter_registry.py): the entry points in pyproject.toml (which must equal it; they let other
#: tools discover the built-ins, while this table makes them resolve from a tree that was never installed),
#: the README's exporter sections (docs/build_readme.py reads this table), the docs page each backend exporter
#: needs, and the contract tests that run every exporter through the same cases.
_BUILTIN: dict[str, str] = {
    "console": "evlog.exporters.console:ConsoleExporter",
    "jsonl": "evlog.exporters.jsonl:JsonlExporter",
    "memory": "evlog.exporters.memory:MemoryExporter",
    "session_server": "evlog.exporters.session_server:SessionServerExporter",
    "statsig": "evlog.exporters.statsig:StatsigExporter",
    "coveo": "evlog.exporters.coveo:CoveoExporter",
    "adcp": "evlog.exporters.adcp:AdcpExporter",
    "otel": "evlog.exporters.otel:OtelExporter",
    "viewer": "evlog.exporters.viewer:ViewerExporter",
}


def _entry_point_targets() -> dict[str, str]:
    from importlib.metadata import entry_points  # scanning installed packages is slow: only when needed

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_exporters() -> list[str]:
    """Every exporter name that ``configure(exporters=[...])`` accepts, sorted."""
    return sorted(set(_BUILTIN) | set(_entry_point_targets()))


def load_exporter_class(name: str, *, path: str = "exporters", source: str = "") -> type[Exporter]:
    """The class registered under ``name``; ``ConfigError`` listing the valid names when there is none."""
    from evlog.exporters._base import Exporter

    target = _BUILTIN.get(name)
    if target is None:
        target = _entry_point_targets().get(name)
    if target is None:
        raise ConfigError(
            f"unknown exporter {name!r}; available exporters: {', '.join(available_exporters())}"
            f" (third-party exporters register in the {ENTRY_POINT_GROUP!r} entry-point group)",
            path=path,
            source=source,
        )
    try:
        cls = _import_target(target)
    except ImportError as exc:
        raise ExporterError(
            f"exporter {name!r} could not be imported from {target}: {exc}. Is its optional dependency installed?"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Exporter)):
        raise ConfigError(
            f"{target} (registered as exporter {name!r}) is not an evlog Exporter subclass",
            path=path,
            source=source,
        )
    return cls
