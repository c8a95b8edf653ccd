"""A loopback HTTP sink for the benchmarks: answers every request 200 at once, in its own process.

python bench/sink.py            # prints the port it listens on, then serves until killed
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import socket
import sys
import threading

_lock = threading.Lock()
_seen = {"requests": 0, "bytes": 0, "checkout": 0}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # http.server writes the headers and the body separately: without this, Nagle's algorithm holds the body
        # until the client's delayed ACK (40 ms), which caps a client that waits for each answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self) -> None:
        if self.path == "/_count":  # what the benchmark reads to check delivery, then resets
            with _lock:
                body = json.dumps(_seen).encode()
                _seen.update(requests=0, bytes=0, checkout=0)
            self._reply(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "gzip" or raw[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError):  # not gzip after all: count it as it is
                raw = gzip.decompress(raw)
        with _lock:
            _seen["requests"] += 1
            _seen["bytes"] += len(raw)
            _seen["checkout"] += raw.count(b"checkout")  # every client's event is named "checkout"
        self._reply(b'{"success":true,"status":1}')

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_GET = _answer

    def log_message(self, format: str, *args: object) -> None:  # the base class names it so
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that closes its connection at exit is not news


def main() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
