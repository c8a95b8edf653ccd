"""A fake DataCat session server: the contract of the real one (../shared/reference/session-server.md), in-memory.

    with DataCatFake(api_key="k") as fake:       # api_key: require ``Authorization: Bearer k`` (401 otherwise)
        fake.url, fake.sessions, fake.events(sid), fake.forget(sid), fake.server.script(Reply(503)), ...

What it does like the real server: create answers 200 ``{"session_id": uuid}`` (400 text/plain without product
and version); events, heartbeat, end and crash answer 200 ``{"status": "ok"}``; errors are text/plain with a
trailing newline (Go's ``http.Error``); the event fields are type-checked the way Go's JSON decoding does it
(400 ``Invalid request body``), ``level`` is dropped and ``category`` defaults to info/error; unknown sessions
give 404 ``session not found``; gzip bodies are accepted. ``documented_replies=True`` answers in the form the
docs show instead (201 with ``id``, ``{"success": true}``).

And what the real server does beyond the contract, measured against it (issue 14): numbers in ``data`` are
float64 (an integer past 2**53 is rounded); an exception event whose category is ``info`` is stored as
``error``; the names ``application_appears_hung`` / ``application_recovered`` set and clear ``hung``; a session
is ``suspended`` once its last heartbeat is older than ``heartbeat_timeout`` and stays ``active`` forever if it
never sent one; creating a session with a ``machine_id`` marks that machine's suspended, never-ended sessions
crashed; events are accepted after ``/end`` and stored in arrival order; each event costs ``latency`` plus
``growth`` seconds per event the session already holds (the real one re-serialises the whole session).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import threading
import time
import uuid
from typing import Any

import attrs

from support.loopback import Fault, RecordingServer, Reply, Request

_STRING_FIELDS = (
    *("name", "category", "group", "message"),
    *("exception_type", "exception_msg", "source_file", "source_function"),
)
# Go's time.Time accepts RFC 3339 only: a date, a time, optional fraction, and Z or an offset.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@attrs.define
class FakeSession:
    id: str
    product: str
    version: str
    hostname: str | None = None
    machine_id: str | None = None
    events: list[dict[str, Any]] = attrs.field(factory=list)
    heartbeats: int = 0
    ended: bool = False
    crashed: bool = False
    crash_reason: str | None = None
    hung: bool = False
    #: ``time.monotonic()`` of the last heartbeat (None: never).
    last_heartbeat: float | None = None


def _text(status: int, message: str) -> Reply:
    return Reply(status, message + "\n", headers={"Content-Type": "text/plain; charset=utf-8"})


class _BadBody(Exception):
    pass


def _check_event(body: Any) -> dict[str, Any]:
    """The event as the server stores it; ``_BadBody`` where Go's decoder would fail."""
    if not isinstance(body, dict):
        raise _BadBody
    for key in _STRING_FIELDS:
        if body.get(key) is not None and type(body[key]) is not str:
            raise _BadBody
    for key in ("labels", "stacktrace"):
        value = body.get(key)
        if value is not None and (not isinstance(value, list) or any(type(v) is not str for v in value)):
            raise _BadBody
    if body.get("data") is not None and not isinstance(body["data"], dict):
        raise _BadBody
    line = body.get("source_line")
    if line is not None and type(line) is not int:  # json reads 42.0 as a float, as Go refuses it for an int
        raise _BadBody
    stamp = body.get("timestamp")
    if stamp is not None and (type(stamp) is not str or not _RFC3339.match(stamp)):
        raise _BadBody
    stored = {k: v for k, v in body.items() if k != "level"}
    category = stored.get("category") or "info"
    if stored.get("exception_type") and category == "info":  # the server's default for exceptions wins
        category = "error"
    stored["category"] = category
    return stored


def _float64_data(raw: bytes) -> Any:
    """``data`` as Go decodes it into ``map[string]interface{}``: every number a float64."""
    return json.loads(raw, parse_int=lambda text: float(int(text))).get("data")


class DataCatFake:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        documented_replies: bool = False,
        latency: float = 0.0,
        growth: float = 0.0,
        heartbeat_timeout: float = 60.0,
    ) -> None:
        self.api_key = api_key
        self.documented_replies = documented_replies
        #: Seconds each events request takes (spent inside the handler, so overlapping requests are counted).
        self.latency = latency
        #: Extra seconds per event the session already holds.
        self.growth = growth
        self.heartbeat_timeout = heartbeat_timeout
        self.sessions: dict[str, FakeSession] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = RecordingServer(self.handle)

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> DataCatFake:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    # --- inspection ----------------------------------------------------------------------------------------------

    def events(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.sessions[session_id].events)

    def only_session(self) -> FakeSession:
        with self._lock:
            assert len(self.sessions) == 1, f"expected one session, got {len(self.sessions)}"
            return next(iter(self.sessions.values()))

    def add_session(self, product: str = "app", version: str = "1.0") -> str:
        sid = str(uuid.uuid4())
        with self._lock:
            self.sessions[sid] = FakeSession(sid, product, version)
        return sid

    def forget(self, session_id: str) -> None:
        """The server loses the session (a wiped data directory): later requests for it get 404."""
        with self._lock:
            del self.sessions[session_id]

    # --- the contract ------------------------------------------------------------------------------------------

    def _ok(self) -> Reply:
        return Reply(200, {"success": True} if self.documented_replies else {"status": "ok"})

    def handle(self, request: Request) -> Reply | Fault:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return Reply(200, {"status": "healthy"})
        if self.api_key is not None and request.header("Authorization") != f"Bearer {self.api_key}":
            return _text(401, "Unauthorized")
        if (request.header("Content-Encoding") or "").lower() == "gzip" and request.body == b"<bad gzip>":
            return _text(400, "Failed to decompress request")
        if path == "/api/sessions":
            if request.method != "POST":
                return _text(405, "Method not allowed")
            return self._create(request)
        parts = path.split("/")
        if len(parts) < 4 or parts[:3] != ["", "api", "sessions"] or not parts[3]:
            return _text(404, "Not found")
        sid = parts[3]
        op = "/".join(parts[4:])
        if request.method == "GET" and op == "":
            with self._lock:
                session = self.sessions.get(sid)
                return _text(404, "Session not found") if session is None else Reply(200, attrs.asdict(session))
        if request.method != "POST" or op not in ("events", "heartbeat", "end", "crash", "state", "metrics"):
            return _text(404, "Not found")
        with self._lock:
            if sid not in self.sessions:
                return _text(404, "session not found")
        if op == "events":
            return self._event(sid, request)
        with self._lock:
            session = self.sessions[sid]
            if op == "heartbeat":
                session.heartbeats += 1
                session.last_heartbeat = time.monotonic()
            elif op == "end":
                session.ended = True
            elif op == "crash":
                body = _json(request.body)
                reason = body.get("reason") if isinstance(body, dict) else None
                session.crashed = True
                session.ended = True
                session.crash_reason = reason if isinstance(reason, str) and reason else "abnormal_termination"
        return self._ok()

    def _create(self, request: Request) -> Reply:
        body = _json(request.body)
        if not isinstance(body, dict):
            return _text(400, "Invalid request body")
        product, version = body.get("product"), body.get("version")
        if not (isinstance(product, str) and product and isinstance(version, str) and version):
            return _text(400, "Product and version are required fields")
        sid = str(uuid.uuid4())
        machine = body.get("machine_id")
        with self._lock:
            if machine:
                for earlier in self.sessions.values():
                    if earlier.machine_id == machine and self._suspended(earlier):
                        earlier.crashed = earlier.ended = True
                        earlier.events.append({"name": "session_crashed_detected", "category": "critical"})
            self.sessions[sid] = FakeSession(sid, product, version, body.get("hostname"), machine)
        if self.documented_replies:
            return Reply(201, {"id": sid, "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat()})
        return Reply(200, {"session_id": sid})

    def _suspended(self, session: FakeSession) -> bool:
        """Heartbeats stopped and never ended; a session that sent none is never suspended (the real rule)."""
        beat = session.last_heartbeat
        return not session.ended and beat is not None and time.monotonic() - beat > self.heartbeat_timeout

    def state(self, session_id: str) -> dict[str, Any]:
        """The flags the real server computes on read."""
        with self._lock:
            session = self.sessions[session_id]
            suspended = self._suspended(session)
            return {
                "active": not session.ended and not suspended,
                "suspended": suspended,
                "crashed": session.crashed,
                "hung": session.hung,
                "ended": session.ended,
            }

    def _event(self, sid: str, request: Request) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            held = len(self.sessions[sid].events) if sid in self.sessions else 0
        try:
            delay = self.latency + self.growth * held
            if delay:
                self._stopping.wait(delay)  # simulated server latency, not synchronisation
            try:
                stored = _check_event(_json(request.body))
                if isinstance(stored.get("data"), dict):
                    stored["data"] = _float64_data(request.body)
            except _BadBody:
                return _text(400, "Invalid request body")
            with self._lock:
                session = self.sessions.get(sid)
                if session is None:
                    return _text(404, "session not found")
                session.events.append(stored)
                if stored.get("name") == "application_appears_hung":
                    session.hung = True
                elif stored.get("name") == "application_recovered":
                    session.hung = False
            return self._ok()
        finally:
            with self._lock:
                self.in_flight -= 1


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
