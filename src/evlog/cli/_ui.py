"""``evlog ui``: the local live viewer. Serves the page on loopback and shows what viewer exporters send."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import webbrowser
from typing import Any

from evlog.viewer import DEFAULT_PORT, ViewerServer
from evlog.viewer._files import read_events

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "ui",
        help="open the local live event viewer",
        description="Serve a page on this machine that shows events live as apps log them. An app sends to it "
        "with the viewer exporter (EVLOG_EXPORTERS=viewer, or added to the others). Ctrl-C ends.",
    )
    sub.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)")
    sub.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}; 0 picks a free one")
    sub.add_argument("--open", action="store_true", help="open the page in the default browser")
    sub.add_argument(
        "--file", metavar="PATH", action="append", default=[], help="also show the events of a .jsonl or .evspool file"
    )
    return sub


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set, for tests)."""
    loaded = []
    for path in args.file:
        try:
            loaded.append((path, read_events(path)))
        except (OSError, sqlite3.Error) as exc:
            print(f"evlog: error: cannot read {path}: {exc}", file=sys.stderr)
            return 1
    try:
        server = ViewerServer(args.host, args.port)
    except ValueError as exc:
        print(f"evlog: error: {exc}", file=sys.stderr)
        return 2
    for path, events in loaded:
        server.store.add(events, source=f"file {path}")
    try:
        server.start()
    except OSError as exc:
        print(f"evlog: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        print(f"evlog viewer on {server.url}  (apps send to it with EVLOG_EXPORTERS=viewer", end="")
        print("" if server.port == DEFAULT_PORT else f" and EVLOG_VIEWER_URL={server.url}", end="")
        print("; Ctrl-C ends)", flush=True)
        if args.open:
            webbrowser.open(server.url)
        (stop or threading.Event()).wait()
    finally:
        server.close()
    return 0
