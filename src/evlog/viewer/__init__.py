"""The local live viewer (``evlog ui``): a loopback HTTP server that viewer exporters send to, and the page
that shows their events as they arrive. Standard library only; the page's files ship in ``static/``."""

from __future__ import annotations

from evlog.viewer._server import DEFAULT_PORT, ViewerServer, check_loopback
from evlog.viewer._store import EventStore

__all__ = ["DEFAULT_PORT", "EventStore", "ViewerServer", "check_loopback"]
