"""A fake Statsig ``log_event`` endpoint for the loopback ``RecordingServer``.

It implements the documented contract, so tests fail when the exporter sends something the real service
would refuse: ``POST /v1/log_event`` with a ``STATSIG-API-KEY`` header (403 otherwise), a JSON body (gzip when
``Content-Encoding: gzip``) holding ``events``, an array of at least one event with a non-empty ``eventName``
(400 otherwise), and a ``202 {"success": true}`` answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from support.loopback import Reply, Request

PATH = "/v1/log_event"
KEY = "secret-test-key-0123456789"


class StatsigFake:
    def __init__(self, key: str = KEY) -> None:
        self.key = key
        #: ``time.monotonic()`` at each request's arrival, to check the gaps retries leave.
        self.arrivals: list[float] = []
        self._next: deque[Reply] = deque()
        self._lock = threading.Lock()

    def answer_next(self, *replies: Reply) -> None:
        """Answer the next requests with these replies (their arrival is still timed, unlike ``script``)."""
        with self._lock:
            self._next.extend(replies)

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            self.arrivals.append(time.monotonic())
            if self._next:
                return self._next.popleft()
        if request.method != "POST" or request.path != PATH:
            return Reply(404, {"success": False, "message": "not found"})
        if request.header("STATSIG-API-KEY") != self.key:
            return Reply(403, {"success": False, "message": "Invalid API key"})
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"success": False, "message": "body is not JSON"})
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return Reply(400, {"success": False, "message": "events must be a non-empty array"})
        for event in events:
            if not isinstance(event, dict) or not isinstance(event.get("eventName"), str) or not event["eventName"]:
                return Reply(400, {"success": False, "message": "eventName is required"})
        return Reply(202, {"success": True})


def events_of(requests: list[Request]) -> list[dict[str, Any]]:
    """Every event of every request, in order."""
    return [event for request in requests for event in request.json()["events"]]
