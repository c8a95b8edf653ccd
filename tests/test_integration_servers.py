"""The example apps under real server processes on loopback: gunicorn (Flask, WSGI) and uvicorn (FastAPI, ASGI).

Two requests for different users run at once; every event a request logs (its own, its exception, a record
through the logging bridge) carries its own user, and everything is in the file once the server has stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, user: str) -> int:
    request = urllib.request.Request(url, method="POST", headers={"X-User-Id": user})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _serve(args: list[str], ready: str, events: Path, check: Callable[[list[dict[str, Any]]], None]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env.update(EVLOG_EXPORTERS="jsonl", EVLOG_JSONL_PATH=str(events), HOME=str(events.parent), PYTHONPATH=str(ROOT))
    server = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        for line in server.stderr:  # the server says when it listens
            if ready in line:
                break
        else:
            pytest.fail("the server did not start")
        port = args[args.index("--port") + 1] if "--port" in args else args[args.index("-b") + 1].split(":")[1]
        statuses: dict[str, int] = {}
        start = threading.Barrier(2)

        def client(user: str, cart: str) -> None:
            start.wait()
            statuses[user] = _post(f"http://127.0.0.1:{port}/carts/{cart}/checkout", user)

        clients = [threading.Thread(target=client, args=a) for a in (("u-1", "c-1"), ("u-2", "c-2"))]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert statuses == {"u-1": 200, "u-2": 500}
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    finally:
        server.kill()
        _, stderr = server.communicate()
    logged = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    assert logged, stderr[-2000:]
    check(logged)


def _users_by_name(logged: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for event in logged:
        found.setdefault(event["name"], set()).add(event.get("user", {}).get("id", "-"))
    return found


def test_flask_under_gunicorn_workers(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    port = _free_port()
    args = [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "2", "-b", f"127.0.0.1:{port}"]

    def check(logged: list[dict[str, Any]]) -> None:
        users = _users_by_name(logged)
        assert users["checkout_started"] == {"u-1", "u-2"}
        assert users["checkout_completed"] == {"u-1"}
        assert users["exception"] == {"u-2"}  # the failing request's exception carries its own user
        assert users["log.shop"] == {"u-2"}  # and so does Flask's own record, through the logging bridge

    _serve([*args, "examples.flask_app:app"], "Listening at", tmp_path / "events.jsonl", check)


def test_fastapi_under_uvicorn(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    port = _free_port()
    args = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)]

    def check(logged: list[dict[str, Any]]) -> None:
        users = _users_by_name(logged)
        assert users["checkout_started"] == {"u-1", "u-2"}
        assert users["checkout_completed"] == {"u-1"}
        assert users["exception"] == {"u-2"}
        assert users["log.shop"] == {"u-2"}  # the app's warning record, through the logging bridge

    _serve(args, "Uvicorn running on", tmp_path / "events.jsonl", check)
