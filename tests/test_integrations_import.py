"""Integrations load their framework only when the app imports them: ``import evlog`` loads none of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("flask", "werkzeug", "django", "fastapi", "starlette", "celery", "kombu", "structlog", "loguru")


def _top_level_modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_import_evlog_loads_no_framework_and_no_integration() -> None:
    loaded = _top_level_modules_after("import evlog")
    assert not {m.split(".")[0] for m in loaded} & set(FRAMEWORKS)
    assert not any(m.startswith("evlog.integrations") for m in loaded)


@pytest.mark.parametrize(
    ("module", "framework"),
    [("wsgi", None), ("asgi", None), ("flask", "flask"), ("structlog", "structlog"), ("loguru", "loguru")],
)
def test_an_integration_loads_only_its_own_framework(module: str, framework: str | None) -> None:
    loaded = {m.split(".")[0] for m in _top_level_modules_after(f"import evlog.integrations.{module}")}
    others = set(FRAMEWORKS) - {framework, "werkzeug" if framework == "flask" else None}
    assert not loaded & others
