"""The README's "Writing an exporter" runs as written, with public names only, against a real HTTP server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import evlog
from evlog import Drop
from support.loopback import RecordingServer, Reply

TAIL = Path(__file__).resolve().parent.parent / "docs" / "README.tail.md"
KEY = "acme-key-0123456789abcdef"


def example_code() -> str:
    section = TAIL.read_text().split("## Writing an exporter", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found is not None
    return found.group(1)


@pytest.fixture
def acme() -> dict[str, Any]:
    """The example's module namespace, as if it were a package of the reader's."""
    namespace: dict[str, Any] = {"__name__": "acme_evlog"}
    exec(compile(example_code(), str(TAIL), "exec"), namespace)  # noqa: S102 - our own README, the point of the test
    return namespace


def test_the_example_imports_only_public_names() -> None:
    imported = re.findall(r"^(?:from|import) ([\w.]+)", example_code(), flags=re.MULTILINE)
    assert imported
    assert all(not part.startswith("_") for module in imported for part in module.split(".")), imported


def test_the_example_exporter_delivers_through_the_pipeline(
    acme: dict[str, Any], recording_server: RecordingServer
) -> None:
    drops: list[Drop] = []
    exporter = acme["AcmeExporter"](url=recording_server.url + "/events", api_key=KEY)
    evlog.configure(exporters=[exporter], flush_interval=0.05, on_drop=drops.append)
    evlog.log_event("signup", data={"plan": "pro"})
    evlog.log_event("x" * 101)  # breaks the example's rule: refused before sending
    assert evlog.flush(5) is False  # an event was refused: flush says not all was delivered
    (request,) = recording_server.wait_for(1)
    assert request.header("X-Api-Key") == KEY
    assert [(e["name"], e["plan"]) for e in request.json()] == [("signup", "pro")]
    assert [(d.reason.value, d.count) for d in drops] == [("rejected", 1)]
    assert "at most 100 characters" in drops[0].detail
    assert KEY not in repr(exporter) + repr(exporter.options)


def test_the_example_exporter_retries_what_the_server_could_not_take(
    acme: dict[str, Any], recording_server: RecordingServer
) -> None:
    exporter = acme["AcmeExporter"](url=recording_server.url + "/events", api_key=KEY)
    evlog.configure(exporters=[exporter], flush_interval=0.05, retry_initial_backoff=0.01)
    recording_server.script(Reply(503, "busy"))
    evlog.log_event("signup")
    assert evlog.flush(5)
    assert len(recording_server.wait_for(2)) == 2
    assert evlog.stats()["acme"].sent == 1
