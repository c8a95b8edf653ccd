"""``viewer``: send events to a local live viewer (``evlog ui``) on loopback, for looking at them in a browser.

The viewer is a development aid that may or may not be running, so this exporter never waits for it: one short
POST per batch, no retry. When nothing listens the batch is dropped at once and counted (reason ``failed``,
detail "no viewer running at ..."), so a forgotten ``EVLOG_EXPORTERS=viewer`` costs nothing but a count.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

import attrs

from evlog._serialize import dumps, event_wire
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes
from evlog.exporters.http import is_loopback_host

__all__ = ["INGEST_PATH", "ViewerExporter", "ViewerOptions"]

#: Where the viewer takes batches (``evlog.viewer`` serves it).
INGEST_PATH = "/ingest"


def _loopback_url(_inst: object, _attribute: object, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "http" or not is_loopback_host(parts.hostname):
        raise ValueError(f"the viewer runs on this machine only: expected http://127.0.0.1:<port>, got {url!r}")


def _positive(_inst: object, _attribute: object, value: float) -> None:
    if not value > 0:
        raise ValueError(f"timeout must be > 0, got {value!r}")


@attrs.frozen
class ViewerOptions:
    #: The viewer's address (``evlog ui`` prints it); loopback only.
    url: str = attrs.field(default="http://127.0.0.1:8765", validator=_loopback_url)
    #: Seconds one POST may take. Kept short: a viewer that does not answer must not hold events back.
    timeout: float = attrs.field(default=0.5, validator=_positive)


def _process() -> dict[str, Any]:
    return {"pid": os.getpid(), "name": os.path.basename(sys.argv[0]) or "python", "host": socket.gethostname()}


def _pipeline_stats() -> dict[str, Any]:
    """This process's ``evlog.stats()`` per exporter, as JSON data; empty when it cannot be read."""
    try:
        from evlog._api import stats

        figures = stats()
    except Exception:  # the viewer's counters are a nicety: never let them cost an export
        return {}
    return {
        name: {
            "queued": s.queued,
            "sent": s.sent,
            "retried": s.retried,
            "dropped": dict(s.dropped),
            "unknown": s.unknown,
            "logged": s.logged,
        }
        for name, s in figures.exporters.items()
    }


class ViewerExporter(Exporter):
    """POSTs ``{"process": ..., "app": ..., "stats": ..., "events": [...]}`` to the viewer's ``/ingest``.

    Events go in their full form (``event_wire``, as the jsonl exporter writes them). One keep-alive
    connection, over ``http.client`` rather than the shared ``HttpClient``: proxies from the environment must
    never see loopback traffic, and nothing here needs requests' features.
    """

    name = "viewer"
    optional = True
    Options = ViewerOptions
    options: ViewerOptions
    default_max_batch_size = 1000

    def __init__(self, options: ViewerOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        parts = urlsplit(self.options.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path.rstrip("/") + INGEST_PATH
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._unreachable = False

    def _post(self, body: bytes, timeout: float) -> int:
        """The response status; raises OSError (or an http.client error) when no answer came."""
        with self._lock:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            conn = self._conn
            conn.timeout = timeout
            try:
                conn.request("POST", self._path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except BaseException:
                conn.close()
                self._conn = None
                raise
            return response.status

    def _body(self, events: list[bytes]) -> bytes:
        """The request: the process, its app fields and counters, and the events already encoded (joined as
        they are, so each event is encoded once, by the shared guarded step)."""
        head = {"process": _process(), "app": attrs.asdict(self.app), "stats": _pipeline_stats()}
        return dumps(head)[:-1] + b',"events":[' + b",".join(events) + b"]}"

    def export(self, batch: Batch) -> ExportResult:
        outcomes = ExportOutcomes(batch, label="viewer")
        encoded = outcomes.encode(batch.events, event_wire)
        events = [event for event, _ in encoded]
        data = self._body([line for _, line in encoded])
        try:
            status = self._post(data, max(0.05, batch.time_left(self.options.timeout)))
        except (OSError, http.client.HTTPException):
            # Never retried: the viewer is optional, and events waiting for one would only pile up. The drop is
            # counted by the pipeline and logged at debug level only (``optional``).
            self._unreachable = True
            outcomes.refuse(events, f"no viewer running at {self.options.url} (start one with `evlog ui`)")
            return outcomes.result()
        self._unreachable = False
        if 200 <= status < 300:
            outcomes.accept(events)
        else:
            outcomes.refuse(events, f"the viewer at {self.options.url} answered HTTP {status}")
        return outcomes.result()

    def shutdown(self, timeout: float) -> None:
        # The counters sent with a batch are those from before it was sent; the last word gives the final ones.
        if not self._unreachable and timeout > 0:
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._post(self._body([]), min(timeout, self.options.timeout))
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._conn = None
