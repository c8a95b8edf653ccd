"""The viewer's HTTP server: the page, ``POST /ingest`` from viewer exporters, ``GET /api/events`` for the page.

Standard library only (``ThreadingHTTPServer`` on one background thread): the viewer is a development tool
that must install with evlog and start instantly. The page polls ``/api/events?after=<seq>`` a few times a
second; polling was chosen over Server-Sent Events because every request is short, so shutdown never waits on
a stream that a browser holds open.

It listens on loopback only, and answers only requests addressed to a loopback name (the ``Host`` header), so
a web page on another site cannot read the events through DNS rebinding. ``/ingest`` wants
``Content-Type: application/json``, which browsers cannot send cross-origin without a preflight this server
never grants.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import mimetypes
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from evlog.viewer._store import EventStore

__all__ = ["DEFAULT_PORT", "ViewerServer", "check_loopback"]

DEFAULT_PORT = 8765
#: Largest ``/ingest`` body taken (a batch of 1,000 large events fits well within it).
MAX_BODY = 32 * 1024 * 1024
_LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(host: str) -> str:
    """``host`` when it names this machine's loopback interface; ``ValueError`` naming it otherwise."""
    if not _is_loopback(host):
        raise ValueError(
            f"the evlog viewer listens on loopback only (127.0.0.1, ::1 or localhost), not on {host!r}: "
            "events carry user data and the viewer has no authentication"
        )
    return host


def _static(name: str) -> bytes | None:
    """A file of the page (``static/<name>``), or None; names are looked up, never joined into paths."""
    files = resources.files("evlog.viewer").joinpath("static")
    known = {entry.name for entry in files.iterdir() if entry.is_file()}
    return files.joinpath(name).read_bytes() if name in known else None


class _Server(ThreadingHTTPServer):
    """Tracks its open connections so that closing can end the keep-alive ones a browser holds."""

    daemon_threads = False  # server_close() joins every request thread
    store: EventStore

    def server_activate(self) -> None:
        self.open_requests: set[socket.socket] = set()
        self.requests_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.requests_lock:
            self.open_requests.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.requests_lock:
            self.open_requests.discard(request)
        super().shutdown_request(request)

    def end_connections(self) -> None:
        """Wake every request thread waiting on an idle keep-alive connection, so it ends now."""
        with self.requests_lock:
            requests = list(self.open_requests)
        for request in requests:
            with contextlib.suppress(OSError):  # already closed by the other side
                request.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    #: An idle keep-alive connection is closed after this many seconds.
    timeout = 30
    server_version = "evlog-viewer"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls several times a second."""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status >= 400:  # a refused request's body may be unread: the connection cannot carry another
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

    def _host_ok(self) -> bool:
        host = urlsplit("//" + self.headers.get("Host", "")).hostname or ""
        if _is_loopback(host):
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": "requests must address the viewer by a loopback name"})
        return False

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        if url.path == "/api/events":
            query = parse_qs(url.query)
            try:
                after = int(query.get("after", ["0"])[0])
            except ValueError:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "after must be an integer"})
                return
            self._json(HTTPStatus.OK, self.server.store.after(after))
            return
        name = "index.html" if url.path == "/" else url.path.removeprefix("/static/")
        body = _static(name) if url.path == "/" or url.path.startswith("/static/") else None
        if body is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})
            return
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        self._send(HTTPStatus.OK, body, content_type)

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        if urlsplit(self.path).path != "/ingest":
            self._json(HTTPStatus.NOT_FOUND, {"error": "POST goes to /ingest"})
            return
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "expected application/json"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body must be 1..{MAX_BODY} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length))
            events = [e for e in body["events"] if isinstance(e, dict)]
            process = body.get("process") or {}
            stats = body.get("stats") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'expected {"process": {...}, "events": [...]}'})
            return
        source = f"{process.get('name', '?')} (pid {process.get('pid', '?')})"
        added = self.server.store.add(events, source=source)
        self.server.store.note_process(source, {**process, "app": body.get("app") or {}}, stats, events=added)
        self._json(HTTPStatus.OK, {"accepted": added})


class ViewerServer:
    """The viewer, listening on ``host:port`` (port 0: any free one) from ``start()`` until ``close()``.

    Usable as a context manager. ``url`` is where the page is, and what viewer exporters send to.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, capacity: int = 10_000) -> None:
        self.host = check_loopback(host)
        self.store = EventStore(capacity)
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        self._server: _Server = server_class((host.strip("[]"), port), _Handler, bind_and_activate=False)
        self._server.store = self.store
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host.strip("[]")
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> ViewerServer:
        """Bind and serve on a background thread; ``OSError`` when the port is taken."""
        try:
            self._server.server_bind()
            self._server.server_activate()
        except OSError:
            self._server.server_close()
            raise
        # A short poll interval: close() waits for the loop to notice, and a viewer should stop at once.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="evlog-viewer", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the socket and wait for the thread (requests are short: this is quick)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
            self._server.end_connections()
        self._server.server_close()

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
