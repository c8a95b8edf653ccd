"""Events still queued when the app exits are delivered by the shutdown that runs at interpreter exit."""

from __future__ import annotations

import subprocess
import sys

from support.loopback import RecordingServer, Reply


def _session_server(request: object) -> Reply:
    path = getattr(request, "path", "")
    if path == "/api/sessions":
        return Reply(200, {"session_id": "s1"})
    return Reply(200, {"status": "ok"})


def test_queued_events_reach_an_http_backend_at_interpreter_exit() -> None:
    with RecordingServer(_session_server) as server:
        code = f"""
import evlog
evlog.configure(
    exporters={{"session_server": {{"url": "{server.url}", "product": "p", "version": "1", "heartbeat_interval": 0}}}},
    flush_interval=60,  # nothing would be sent before exit but for the exit-time shutdown
)
for i in range(5):
    evlog.log_event("at-exit", data={{"i": i}})
"""
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        events = [r.json()["data"]["i"] for r in server.requests_to("/api/sessions/s1/events")]
        assert sorted(events) == [0, 1, 2, 3, 4]
        assert server.requests[-1].path == "/api/sessions/s1/end"


def test_a_crash_with_a_hanging_backend_exits_within_one_shutdown_timeout() -> None:
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    code = f"""
import socket, evlog
from evlog import Exporter, ExportResult
class Hang(Exporter):
    name = "hang"
    def export(self, batch):
        socket.create_connection(("127.0.0.1", {port})).recv(1)
        return ExportResult.success()
evlog.configure(exporters=[Hang()], flush_interval=60, shutdown_timeout=2.0, capture_exceptions=True)
raise RuntimeError("boom")
"""
    try:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr  # the previous excepthook still printed the traceback
    # The crash's flush and the exit-time shutdown share one shutdown_timeout (2 s), not one each.
    assert elapsed < 3.8
