"""``debug`` / ``EVLOG_DEBUG=1``: the effective configuration at configure, then one record per export outcome."""

from __future__ import annotations

import logging

import pytest

import evlog


def test_debug_logs_the_configuration_once_and_each_outcome(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EVLOG_DEBUG", "1")
    caplog.set_level(logging.DEBUG, logger="evlog")
    evlog.configure(
        exporters={"memory": {}, "statsig": {"api_key": "secret-abcdefghijklmnop", "endpoint": "http://127.0.0.1:9/x"}},
        retry_deadline=0,
    )
    evlog.log_event("one")
    evlog.flush(5)
    records = [r.getMessage() for r in caplog.records if r.name == "evlog"]
    configured = [m for m in records if m.startswith("evlog: configured")]
    assert len(configured) == 1
    assert "debug" in configured[0] and "(environment variable EVLOG_DEBUG)" in configured[0]
    assert "'***mnop'" in configured[0]
    assert "secret-abcdefghijklmnop" not in "\n".join(records)
    assert any(m.startswith("evlog: export to memory: 1 event(s) -> success") for m in records)
    assert any(m.startswith("evlog: export to statsig: 1 event(s) -> retry") for m in records)
