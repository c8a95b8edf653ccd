"""A real WSGI server on loopback for the integration tests, and a plain HTTP client for it.

    with WsgiServer(app) as server:
        status, body = get(server.url + "/path", headers={"X-User": "alice"})

The server answers each request on its own thread and ``stop()`` waits for those threads, so a test that
leaves the block has no server thread left. Waiting is on the server's own events, never on sleeps.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = False  # stop() joins every request thread (block_on_close)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class WsgiServer:
    def __init__(self, app: Any) -> None:
        self._server = make_server("127.0.0.1", 0, app, server_class=_Threading, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="test-wsgi-server")

    def __enter__(self) -> WsgiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of a GET; an error status is returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def get_concurrently(requests: list[tuple[str, dict[str, str]]], timeout: float = 20) -> list[tuple[int, bytes]]:
    """Send the GETs at the same time, one thread each; their results in order. Raises if one did not finish."""
    results: list[tuple[int, bytes] | BaseException | None] = [None] * len(requests)

    def send(index: int, url: str, headers: dict[str, str]) -> None:
        try:
            results[index] = get(url, headers, timeout)
        except BaseException as exc:
            results[index] = exc

    threads = [
        threading.Thread(target=send, args=(i, url, headers), name=f"test-client-{i}")
        for i, (url, headers) in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    done: list[tuple[int, bytes]] = []
    for result in results:
        if not isinstance(result, tuple):
            raise AssertionError(f"a request did not complete: {result!r}")
        done.append(result)
    return done


__all__ = ["WsgiServer", "get", "get_concurrently"]
