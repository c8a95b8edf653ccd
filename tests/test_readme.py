"""The README is generated from docs/ and its quick start is what CI runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_built_from_the_current_docs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build_readme.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_commands = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv .venv &&")
    ]
    assert ci_commands[0] == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest -q"
    )
    assert ci_commands[0] in readme
    assert "examples/quickstart.py" in readme
