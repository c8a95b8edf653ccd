"""A small recording HTTP server on loopback, for testing exporters over real HTTP.

    server = RecordingServer(handler)          # handler(request) -> Reply, implements a backend's contract
    server.start(); ...; server.stop()         # or use it as a context manager / the ``recording_server`` fixture

Every request is recorded (method, path, headers, raw and decoded body). Tests can script what happens to the
next requests, ahead of the handler: ``server.script(Reply(503, headers={"Retry-After": "1"}))``,
``server.script(Fault.RESET)`` (close the connection without answering), ``server.script(Fault.HANG)`` (hold
the request until the server stops or ``release()``), ``server.script(Reply(200, delay=0.5))``.
Waiting is done on conditions with timeouts: ``server.wait_for(3)``.
"""

from __future__ import annotations

import enum
import gzip
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


class Fault(enum.Enum):
    RESET = "reset"
    HANG = "hang"
    #: Promise a 1,000-byte body, send a few bytes, and close.
    TRUNCATE = "truncate"


@attrs.define
class Reply:
    status: int = 200
    body: Any = attrs.field(factory=lambda: {"success": True})
    headers: dict[str, str] = attrs.field(factory=dict)
    #: Seconds to wait before answering (waits on the server's stop event, so stop() ends it).
    delay: float = 0.0
    #: Send the body without a length and keep the connection open afterwards (until ``release()`` or stop),
    #: like a Server-Sent Events stream the server does not close.
    hold_open: bool = False

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/plain; charset=utf-8")
        return json.dumps(self.body).encode(), "application/json"


@attrs.define
class Request:
    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Handler = Callable[[Request], "Reply | Fault"]


def _default_handler(_request: Request) -> Reply:
    return Reply()


class RecordingServer:
    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or _default_handler
        self.requests: list[Request] = []
        self._scripted: deque[Reply | Fault] = deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> RecordingServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle's algorithm on, a keep-alive client waits
            # for the delayed ACK (about 40 ms) on every request, which real servers (Go's, nginx) never make it do.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = raw
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip" and raw:
                    try:
                        body = gzip.decompress(raw)
                    except OSError:
                        body = b"<bad gzip>"
                request = Request(self.command, self.path, dict(self.headers.items()), raw, body)
                server._record(request)
                action = server._next_action(request)
                if action is Fault.RESET:
                    # SO_LINGER 0: the close sends RST, the client sees "connection reset".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if action is Fault.TRUNCATE:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"status": ')
                    self.close_connection = True
                    return
                if action is Fault.HANG:
                    server._wait_released()
                    self.close_connection = True
                    return
                assert isinstance(action, Reply)
                if action.delay and server._stopping.wait(action.delay):
                    self.close_connection = True
                    return
                payload, ctype = action.encoded()
                self.send_response(action.status)
                headers = {"Content-Type": ctype, **action.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                if action.hold_open:
                    chunked = "chunked" in action.headers.get("Transfer-Encoding", "")
                    if not chunked:
                        self.send_header("Connection", "close")  # the body ends when the connection does
                    self.end_headers()
                    # Chunked: one chunk now, and the closing chunk never comes.
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload) if chunked else payload)
                    self.wfile.flush()
                    server._wait_released()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting and waiting ------------------------------------------------------------------------------

    def script(self, *actions: Reply | Fault) -> None:
        """The next requests get these answers, in order, before the handler is consulted again."""
        with self._cond:
            self._scripted.extend(actions)

    def reset(self) -> None:
        """Forget recorded requests and scripted replies (for a server shared by several tests)."""
        with self._cond:
            self.requests.clear()
            self._scripted.clear()
        self._release.clear()

    def release(self) -> None:
        """Let requests held by ``Fault.HANG`` go (their connections are closed without an answer)."""
        self._release.set()

    def _wait_released(self) -> None:
        self._release.wait(60)

    def _next_action(self, request: Request) -> Reply | Fault:
        with self._cond:
            if self._scripted:
                return self._scripted.popleft()
        return self.handler(request)

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0, *, path: str | None = None) -> list[Request]:
        """Wait until ``count`` requests (to ``path`` if given) arrived; AssertionError on timeout."""

        def matching() -> list[Request]:
            return [r for r in self.requests if path is None or r.path == path]

        with self._cond:
            ok = self._cond.wait_for(lambda: len(matching()) >= count, timeout)
            found = matching()
        assert ok, f"expected {count} request(s){' to ' + path if path else ''}, got {len(found)}"
        return found

    def requests_to(self, path: str) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.path == path]
