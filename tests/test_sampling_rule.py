"""``sample_rate`` never drops what matters most: exception events and events at error and above."""

from __future__ import annotations

import evlog
from evlog._api import current_client
from evlog.exporters.memory import MemoryExporter


def _delivered() -> list[str]:
    assert evlog.flush(5)
    client = current_client()
    assert client is not None
    exporter = client.config.exporters[0]
    assert isinstance(exporter, MemoryExporter)
    return [e.name for e in exporter.events]


def _log_all() -> None:
    evlog.log_event("routine", level="info")
    evlog.log_event("warned", level="warning")
    evlog.log_event("failed", level="error")
    evlog.log_event("fatal", level="critical")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        evlog.capture_exception(exc)


def test_sampling_keeps_errors_and_exceptions() -> None:
    evlog.configure(exporters=["memory"], sample_rate=0.0)
    _log_all()
    delivered = _delivered()
    assert delivered[:2] == ["failed", "fatal"]
    assert len(delivered) == 3  # and the captured exception
    assert evlog.stats().sampled_out == 2


def test_sample_errors_lets_sampling_drop_them_too() -> None:
    evlog.configure(exporters=["memory"], sample_rate=0.0, sample_errors=True)
    _log_all()
    assert _delivered() == []
    assert evlog.stats().sampled_out == 5
