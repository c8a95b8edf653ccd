"""Every code sample in README.md runs as written: each ```python block as a script, against loopback backends;
each ```toml block parses.

Placeholders the README documents (a backend URL, ``secret-...``) are replaced through ``SUBSTITUTIONS`` below,
and endpoints the samples leave to the environment are pointed at the fakes through ``environment()``; no
library is patched. Samples in docs/exporters/*.md that fail are listed in ``KNOWN_FAILURES`` with the fix
they need, until their owner applies it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.coveo_fake import PATH as COVEO_PATH
from support.coveo_fake import TOKEN as COVEO_TOKEN
from support.coveo_fake import CoveoFake
from support.datacat_fake import DataCatFake
from support.loopback import RecordingServer
from support.mcp_fake import McpFake
from support.statsig_fake import KEY as STATSIG_KEY
from support.statsig_fake import PATH as STATSIG_PATH
from support.statsig_fake import StatsigFake

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

README = Path(__file__).resolve().parent.parent / "README.md"

#: Sample id -> why it fails and the exact fix, for samples in files this test's author could not edit.
KNOWN_FAILURES: dict[str, str] = {}


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lstrip("#").strip().lower()).strip("-")


def samples(lang: str) -> Iterator[tuple[str, str]]:
    """(id, code) of each ```lang block; the id is its heading's slug, numbered when a heading has several."""
    text = README.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    heading = "top"
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if match.group(1):
            heading = _slug(match.group(1))
            continue
        if match.group(2) != lang:
            continue
        seen[heading] = seen.get(heading, 0) + 1
        yield (heading if seen[heading] == 1 else f"{heading}-{seen[heading]}"), match.group(3)


def _params(lang: str) -> list[object]:
    return [
        pytest.param(code, id=sid, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[sid], strict=True))
        if sid in KNOWN_FAILURES
        else pytest.param(code, id=sid)
        for sid, code in samples(lang)
    ]


class Backends:
    """The loopback fakes every sample may reach, and how the README's placeholders map onto them."""

    def __init__(self, statsig: RecordingServer, coveo: RecordingServer, datacat: DataCatFake, mcp: McpFake) -> None:
        self.statsig, self.coveo, self.datacat, self.mcp = statsig, coveo, datacat, mcp

    def substitutions(self) -> dict[str, str]:
        return {
            "http://localhost:9090": self.datacat.url,  # the session server's documented address
            '"secret-..."': repr(STATSIG_KEY),  # Statsig's documented key placeholder
            "https://seller.example/mcp": self.mcp.url,  # the AdCP seller's documented agent_url
        }

    def environment(self) -> dict[str, str]:
        return {
            "EVLOG_STATSIG_ENDPOINT": self.statsig.url + STATSIG_PATH,
            "EVLOG_STATSIG_API_KEY": STATSIG_KEY,
            "EVLOG_COVEO_ENDPOINT": self.coveo.url + COVEO_PATH,
            "COVEO_API_KEY": COVEO_TOKEN,
            "ADCP_TOKEN": "adcp-test-token",
        }


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    with (
        RecordingServer(StatsigFake()) as statsig,
        RecordingServer(CoveoFake()) as coveo,
        DataCatFake() as datacat,
        McpFake() as mcp,
    ):
        yield Backends(statsig, coveo, datacat, mcp)


def test_the_readme_has_samples_to_check() -> None:
    assert len(list(samples("python"))) >= 10
    assert set(KNOWN_FAILURES) <= {sid for sid, _ in samples("python")}


@pytest.mark.parametrize("code", _params("python"))
def test_python_sample_runs_as_written(code: str, backends: Backends, tmp_path: Path) -> None:
    for placeholder, real in backends.substitutions().items():
        code = code.replace(placeholder, real)
    script = tmp_path / "sample.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**env, **backends.environment()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if re.search(r"dropped|refused|invalid|Traceback", line)]
    assert problems == [], result.stderr


@pytest.mark.parametrize("code", [pytest.param(c, id=sid) for sid, c in samples("toml")])
def test_toml_sample_parses(code: str) -> None:
    tomllib.loads(code)
