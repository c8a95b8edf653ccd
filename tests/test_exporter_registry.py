"""An exporter is its module plus one line in ``_registry._BUILTIN``; everything else must follow from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evlog.exporters import Exporter, available_exporters, load_exporter_class
from evlog.exporters._registry import _BUILTIN, ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parent.parent
#: Exporters that keep events on this machine: documented in README.core.md, not in a page of their own.
LOCAL = {"console", "jsonl", "memory"}


@pytest.mark.parametrize("name", list(_BUILTIN))
def test_each_registered_name_loads_an_exporter_of_that_name(name: str) -> None:
    cls = load_exporter_class(name)
    assert issubclass(cls, Exporter)
    assert cls.name == name
    assert name in available_exporters()


def test_pyproject_entry_points_are_the_registry() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][ENTRY_POINT_GROUP] == _BUILTIN


def test_backend_exporters_have_a_docs_page_and_no_page_is_orphaned() -> None:
    pages = {path.stem for path in (ROOT / "docs" / "exporters").glob("*.md")}
    assert pages == set(_BUILTIN) - LOCAL


def test_readme_lists_and_describes_every_exporter() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Exporters\n", 1)[1]
    table = set(re.findall(r"^\| `(\w+)` \|", section.split("\n\n", 1)[0], flags=re.MULTILINE))
    assert table == set(_BUILTIN)
    for name in _BUILTIN:
        assert f"\n### `{name}`\n" in section, name
