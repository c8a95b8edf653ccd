"""The public face: ``__all__`` is complete, ``import evlog`` is light, the package is typed."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import evlog


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name in dir(evlog)
        if not name.startswith("_") and name != "annotations" and not isinstance(getattr(evlog, name), type(sys))
    }
    assert public <= set(evlog.__all__)
    for name in evlog.__all__:
        assert hasattr(evlog, name), name


def test_import_evlog_does_not_import_heavy_modules() -> None:
    code = "import sys, evlog; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("requests", "urllib3", "opentelemetry", "orjson", "sqlite3", "multiprocessing"):
        assert f"'{heavy}'" not in loaded


def test_the_package_is_typed() -> None:
    assert (Path(evlog.__file__).parent / "py.typed").is_file()


def test_built_in_exporters_are_registered_as_entry_points() -> None:
    from evlog.exporters._registry import _BUILTIN

    names = {ep.name for ep in entry_points(group="evlog.exporters")}
    assert set(_BUILTIN) <= names
    assert "evlog" in {ep.name for ep in entry_points(group="pytest11")}


def test_errors_subclass_the_builtins_they_resemble() -> None:
    assert issubclass(evlog.InvalidEventError, ValueError)
    assert issubclass(evlog.ConfigError, ValueError)
    assert issubclass(evlog.InvalidEventError, evlog.EvlogError)


def test_extension_types_are_importable_from_evlog() -> None:
    from evlog.typing import OnDrop, Processor

    assert evlog.Processor is Processor
    assert evlog.OnDrop is OnDrop


def test_testing_reset_forgets_the_configuration_and_hooks() -> None:
    import evlog.testing
    from evlog.exporters.memory import MemoryExporter

    memory = MemoryExporter()
    evlog.configure(exporters=[memory], capture_exceptions=True)
    evlog.log_event("before")
    evlog.testing.reset()
    assert [e.name for e in memory.events] == ["before"]  # delivered by the reset's shutdown
    assert evlog.stats().exporters == {}
    from evlog._excepthook import installed

    assert not installed()
