"""``session_server``: events to a session server (the DataCat API), one POST per event, within a session.

The server has no batch endpoint, so a batch becomes one ``POST /api/sessions/{id}/events`` per event, sent
over keep-alive connections with bounded concurrency. The exporter also runs the session's lifecycle: it
creates the session at first use (unless given one), keeps it alive with heartbeats, and ends it at shutdown
(``/crash`` instead of ``/end`` when an uncaught exception is ending the process).

Where the documented API and the real server differ (see docs/exporters/session_server.md), the exporter
accepts both: any 2xx is success, ``session_id`` or ``id`` names a new session, errors may be text/plain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import attrs

from evlog._errors import ConfigError, EventRejected
from evlog._event import Event
from evlog._guard import guarded
from evlog._serialize import EncodeError, encode_safely, rfc3339
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes
from evlog.exporters.http import HttpClient, HttpOutcome, ParallelSender, check_url, outcome_to_result

__all__ = ["SessionServerExporter", "SessionServerOptions"]

_log = logging.getLogger("evlog.session_server")
_JSON = {"Content-Type": "application/json"}


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _not_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0 (0 disables), got {value!r}")


@attrs.frozen(kw_only=True)
class SessionServerOptions:
    #: Base URL of the server, e.g. ``http://localhost:9090`` (plain http only to loopback by default).
    url: str
    #: Send to this existing session instead of creating one. evlog then neither ends nor replaces it.
    session_id: str | None = None
    #: Product and version of the session evlog creates (both required when ``session_id`` is not set).
    product: str | None = None
    version: str | None = None
    #: Optional, sent when creating the session.
    hostname: str | None = None
    #: Optional, sent when creating the session. The real server marks the previous, never-ended session of
    #: the same machine as crashed when a new one starts.
    machine_id: str | None = None
    #: Sent as ``Authorization: Bearer <api_key>``. Never logged or shown in reprs.
    api_key: str | None = attrs.field(default=None, repr=False)
    #: Seconds between heartbeats, the first one as soon as the session exists (the real server shows a session
    #: as suspended 60 s after its last heartbeat, and never for one that sent none). 0 disables them.
    heartbeat_interval: float = attrs.field(default=15.0, validator=_not_negative)
    #: POST ``/end`` (or ``/crash``) at shutdown. None: only when evlog created the session.
    end_session_on_shutdown: bool | None = None
    #: Seconds each request may take.
    timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Requests in flight at once while sending a batch (one POST per event). The server stores events in the
    #: order they arrive, so only 1 (the default: one request at a time, on a keep-alive connection) keeps log
    #: order; more is faster and reorders events within a batch.
    max_concurrency: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: gzip request bodies (the real server accepts them; the documented API does not mention it).
    compress: bool = False
    #: Allow plain http to a host that is not loopback (the API key and events travel unencrypted).
    allow_insecure_http: bool = False
    #: Send the level as ``category`` and evlog's category as ``group``: the real DataCat server ignores
    #: ``level`` and keeps severity in ``category`` only. Off sends evlog's category as ``category`` (the
    #: documented API's form); the server then stores every event without a category as ``info``.
    severity_in_category: bool = True
    #: Send an app event whose name the server gives a meaning to (``application_appears_hung`` marks the
    #: session hung, ``application_recovered`` clears it) as it is. Off renames it ``app.<name>``.
    allow_reserved_names: bool = False
    #: Events per export call.
    max_batch_size: int = attrs.field(default=256, validator=attrs.validators.ge(1))


def _opt_str(payload: dict[str, Any], key: str, value: object) -> None:
    if value is None:
        return
    if type(value) is not str:
        raise EventRejected(f"{key} must be a string, got {type(value).__name__} {value!r:.60}")
    payload[key] = value


def _source_line(value: object) -> int:
    """The server wants a JSON integer: ``"42"`` and ``42.0`` give 400, so lossless forms are fixed here."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str and value.strip().isdigit():
        return int(value.strip())
    raise EventRejected(f"exception.source_line must be an integer, got {type(value).__name__} {value!r:.60}")


def _string_list(key: str, values: object) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise EventRejected(f"{key} must be a list of strings, got {type(values).__name__}")
    for item in values:
        if type(item) is not str:
            raise EventRejected(f"{key} must hold only strings, got {type(item).__name__} {item!r:.60}")
    return list(values)


#: Event names the server acts on (it marks the session hung, recovered or crashed): an app event must not hit
#: them by accident, so they are renamed ``app.<name>`` unless ``allow_reserved_names`` is set.
RESERVED_NAMES = frozenset({"application_appears_hung", "application_recovered", "session_crashed_detected"})
RESERVED_PREFIX = "app."


def event_payload(
    event: Event, *, severity_in_category: bool = True, allow_reserved_names: bool = False
) -> dict[str, Any]:
    """The body of ``POST /api/sessions/{id}/events`` for ``event``; ``EventRejected`` names a broken rule."""
    name = event.name
    if name in RESERVED_NAMES and not allow_reserved_names:
        name = RESERVED_PREFIX + name
    payload: dict[str, Any] = {"name": name, "timestamp": rfc3339(event.timestamp)}
    level = event.level.value
    payload["level"] = level
    if severity_in_category:
        payload["category"] = level
        _opt_str(payload, "group", event.category)
    else:
        _opt_str(payload, "category", event.category)
    if event.labels:
        payload["labels"] = _string_list("labels", event.labels)
    _opt_str(payload, "message", event.message)
    if not isinstance(event.data, Mapping):
        raise EventRejected(f"data must be an object (a mapping), got {type(event.data).__name__}")
    payload["data"] = dict(event.data)
    info = event.exception
    if info is not None:
        if severity_in_category and level == "info":
            # The server turns an exception event's "info" category into "error" (its default for exceptions):
            # without exception_type, the level logged is the one stored; the type travels in data.
            payload["data"].setdefault("exception_type", info.exception_type)
        else:
            _opt_str(payload, "exception_type", info.exception_type)
        _opt_str(payload, "exception_msg", info.exception_msg)
        if info.stacktrace:
            payload["stacktrace"] = _string_list("exception.stacktrace", info.stacktrace)
        _opt_str(payload, "source_file", info.source_file)
        if info.source_line is not None:
            payload["source_line"] = _source_line(info.source_line)
        _opt_str(payload, "source_function", info.source_function)
    return payload


def _encode(payload: Mapping[str, Any]) -> bytes:
    try:
        return encode_safely(payload)
    except EncodeError as exc:
        raise EventRejected(f"data cannot be sent as JSON ({exc})") from None


class SessionServerExporter(Exporter):
    """Sends each event to the session's events endpoint and keeps the session alive while the app runs."""

    name = "session_server"
    Options = SessionServerOptions
    options: SessionServerOptions
    #: Kept out of the shutdown budget for ``/end`` (or ``/crash``): a session left open looks alive forever.
    shutdown_reserve = 0.5

    def __init__(self, options: SessionServerOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        opts = self.options
        check_url(opts.url, option="exporters.session_server.url", allow_insecure_http=opts.allow_insecure_http)
        # A session's product and version: the options, else the app's service and release (configure()).
        self._product = opts.product or self.app.service
        self._version = opts.version or self.app.release
        if not opts.session_id and not (self._product and self._version):
            raise ConfigError(
                "set session_id (EVLOG_SESSION_SERVER_SESSION_ID) to use an existing session, or product and "
                "version (EVLOG_SESSION_SERVER_PRODUCT, EVLOG_SESSION_SERVER_VERSION, or the service and release "
                "options) to let evlog create one",
                path="exporters.session_server",
            )
        self._base = opts.url.rstrip("/")
        headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
        self._http = HttpClient(
            timeout=opts.timeout, headers=headers, secrets=[opts.api_key], pool_size=opts.max_concurrency + 1
        )
        self._sender = ParallelSender(opts.max_concurrency, name="evlog-session-send")
        self._lock = threading.Lock()
        self._replacing = threading.Lock()
        self._session_id: str | None = opts.session_id or None
        self._owns_session = not opts.session_id
        self._inherited = False
        self._crash_reason: str | None = None
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._closed = False
        self._counts = {
            "sessions_created": 0,
            "heartbeats_sent": 0,
            "heartbeats_failed": 0,
        }
        self._last_error = ""
        self._ended = ""

    def __repr__(self) -> str:
        return f"<SessionServerExporter {self._base!r} session={self._session_id!r}>"

    # --- session ----------------------------------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The session events go to (None until it was created)."""
        return self._session_id

    def _url(self, session_id: str, op: str) -> str:
        return f"{self._base}/api/sessions/{quote(session_id, safe='')}/{op}"

    def _post(self, url: str, body: bytes, timeout: float) -> HttpOutcome:
        return self._http.request(
            "POST", url, data=body, headers=_JSON, compress=self.options.compress, timeout=timeout
        )

    def _create_session(self, timeout: float) -> tuple[str | None, ExportResult | None]:
        """(new session id, None) or (None, the result that explains why there is none)."""
        opts = self.options
        body: dict[str, Any] = {"product": self._product, "version": self._version}
        if opts.hostname:
            body["hostname"] = opts.hostname
        if opts.machine_id:
            body["machine_id"] = opts.machine_id
        outcome = self._post(f"{self._base}/api/sessions", _encode(body), timeout)
        if not outcome.ok:
            return None, outcome_to_result(outcome, what="creating a session (POST /api/sessions)")
        reply = outcome.json()
        found = None
        if isinstance(reply, dict):
            found = reply.get("session_id") or reply.get("id")
        if not isinstance(found, str) or not found:
            return None, ExportResult.failure(
                f"creating a session: HTTP {outcome.status} without a session_id in the reply ({outcome.text[:200]!r})"
            )
        with self._lock:
            self._session_id = found
            self._counts["sessions_created"] += 1
        return found, None

    def _ensure_session(self, batch: Batch) -> tuple[str | None, ExportResult | None]:
        sid = self._session_id
        if sid is None:
            sid, problem = self._create_session(batch.time_left(self.options.timeout))
            if sid is None:
                return None, problem
        self._start_heartbeat()
        return sid, None

    def _replace_session(self, gone: str, timeout: float) -> tuple[str | None, str]:
        """(a new session, "") after ``gone`` got 404, or (None, why there is none).

        The worker and the heartbeat thread can both find the session gone: the first replaces it, the other
        takes that replacement instead of creating a second one.
        """
        if not self._owns_session:
            return None, "the session was given by session_id, so evlog does not replace it"
        with self._replacing:
            current = self._session_id
            if current is not None and current != gone:
                return current, ""
            sid, problem = self._create_session(timeout)
        if sid is None:
            assert problem is not None
            return None, f"creating a replacement failed: {problem.message}"
        return sid, ""

    # --- export -----------------------------------------------------------------------------------------

    def export(self, batch: Batch) -> ExportResult:
        outcomes = ExportOutcomes(batch, label="not sent: the session server would refuse it with 400")
        opts = self.options
        bodies = outcomes.prepare(
            batch.events,
            lambda e: _encode(
                event_payload(
                    e, severity_in_category=opts.severity_in_category, allow_reserved_names=opts.allow_reserved_names
                )
            ),
        )
        if not bodies:
            return outcomes.result()
        bodies = self._send_to_their_sessions(bodies, batch, outcomes)
        if not bodies:
            return outcomes.result()
        events = [event for event, _ in bodies]
        sid, problem = self._ensure_session(batch)
        if sid is None:
            assert problem is not None
            outcomes.merge(events, problem)  # the session could not be created: every sendable event shares why
            return outcomes.result()
        answers = self._send(sid, bodies, batch)
        self._record(outcomes, bodies, answers)
        gone = [(event, body) for (event, body), answer in zip(bodies, answers, strict=True) if _is_gone(answer)]
        if gone:
            # The session is unknown to the server (expired, or the server lost its data). Replace it once;
            # what still gets 404 is undeliverable: retrying a 404 would never end.
            new_sid, why = self._replace_session(sid, batch.time_left(self.options.timeout))
            if new_sid is None:
                reason = f"session {sid} not found on the server (404): undeliverable ({why})"
                for event, _ in gone:
                    outcomes.reject(event, reason)
            else:
                self._record(outcomes, gone, self._send(new_sid, gone, batch), replacing=(sid, new_sid))
        return outcomes.result()

    def _send_to_their_sessions(
        self, bodies: list[tuple[Event, bytes]], batch: Batch, outcomes: ExportOutcomes
    ) -> list[tuple[Event, bytes]]:
        """Events left in the spool by an earlier process go to the session they were logged in (the server
        accepts events after ``/end``), so a session holds every event of its process, in log order. What is
        left for this process's own session is returned; an earlier session the server lost (404) is among it.
        """
        if not batch.origins:
            return bodies
        theirs: dict[str, list[tuple[Event, bytes]]] = {}
        own: list[tuple[Event, bytes]] = []
        for event, body in bodies:
            sid = (batch.origins.get(event.event_id) or {}).get("session_id")
            (theirs.setdefault(sid, []) if sid else own).append((event, body))
        for sid, group in theirs.items():
            answers = self._send(sid, group, batch)
            self._record(outcomes, group, answers)
            own.extend(pair for pair, answer in zip(group, answers, strict=True) if _is_gone(answer))
        return own

    def spool_state(self) -> Mapping[str, str]:
        sid = self._session_id
        return {"session_id": sid} if sid is not None else {}

    @staticmethod
    def _record(
        outcomes: ExportOutcomes,
        bodies: list[tuple[Event, bytes]],
        answers: list[HttpOutcome],
        replacing: tuple[str, str] | None = None,
    ) -> None:
        for (event, _body), answer in zip(bodies, answers, strict=True):
            if _is_gone(answer):
                if replacing is not None:
                    old, new = replacing
                    outcomes.reject(event, f"404 from the server for session {old} and again for its replacement {new}")
                continue  # the caller replaces the session and sends it again
            prefix = "session server" if answer.retryable else "refused by the session server"
            outcomes.record((event,), answer, reason=f"{prefix}: {answer.describe()}", one_event=True)

    def _send(self, sid: str, bodies: list[tuple[Event, bytes]], batch: Batch) -> list[HttpOutcome]:
        url = self._url(sid, "events")

        def call(body: bytes) -> Callable[[], HttpOutcome]:
            def send() -> HttpOutcome:
                left = batch.time_left(self.options.timeout)
                if left <= 0:
                    return HttpOutcome(None, error="the batch's deadline passed before this event could be sent")
                return self._post(url, body, left)

            return send

        late = HttpOutcome(None, error="no reply before the batch's deadline")
        if self.options.max_concurrency == 1:
            return self._send_in_order([call(body) for _event, body in bodies], late)
        results = self._sender.run([call(body) for _event, body in bodies], deadline=batch.deadline)
        return [late if result is None else result for result in results]

    @staticmethod
    def _send_in_order(calls: list[Callable[[], HttpOutcome]], late: HttpOutcome) -> list[HttpOutcome]:
        """One request at a time; after a failure the rest wait for the retry, so the server keeps log order."""
        answers: list[HttpOutcome] = []
        for call in calls:
            answer = call()
            answers.append(answer)
            if not answer.ok and (answer.retryable or _is_gone(answer)):
                held = HttpOutcome(None, error="not sent yet: an earlier event of the batch failed (log order)")
                answers.extend(held for _ in range(len(calls) - len(answers)))
                break
        return [late if answer is None else answer for answer in answers]

    # --- heartbeats ---------------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        interval = self.options.heartbeat_interval
        if interval <= 0 or self._inherited or self._heartbeat is not None or self._closed:
            return
        thread = threading.Thread(
            target=self._heartbeat_loop, args=(interval, self._heartbeat_stop), name="evlog-session-heartbeat"
        )
        thread.daemon = True
        self._heartbeat = thread
        thread.start()

    def _heartbeat_loop(self, interval: float, stop: threading.Event) -> None:
        # The first one at once: a session that never sent a heartbeat looks alive to the server forever, so a
        # process killed in its first seconds would never be detected.
        while True:
            sid = self._session_id
            if sid is not None:
                self._beat(sid, min(self.options.timeout, interval * 4))
            if stop.wait(interval):
                return

    def _beat(self, sid: str, timeout: float) -> None:
        outcome = self._post(self._url(sid, "heartbeat"), b"{}", timeout)
        if _is_gone(outcome) and not self._closed:
            # The server lost the session (its data was wiped): start a replacement, as an event would.
            new_sid, _why = self._replace_session(sid, timeout)
            if new_sid is not None:
                outcome = self._post(self._url(new_sid, "heartbeat"), b"{}", timeout)
        with self._lock:
            if outcome.ok:
                self._counts["heartbeats_sent"] += 1
                return
            self._counts["heartbeats_failed"] += 1
            self._last_error = f"heartbeat: {outcome.describe()}"
        with guarded():
            _log.debug("evlog: session server heartbeat failed: %s", outcome.describe())

    def _stop_heartbeat(self, timeout: float) -> None:
        self._heartbeat_stop.set()
        thread, self._heartbeat = self._heartbeat, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, timeout))

    # --- lifecycle ----------------------------------------------------------------------------------------

    def note_crash(self, reason: str) -> None:
        self._crash_reason = reason or "abnormal_termination"

    def _ends_session(self) -> bool:
        if self._inherited:
            return False
        wanted = self.options.end_session_on_shutdown
        return self._owns_session if wanted is None else wanted

    def shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        self._closed = True
        self._stop_heartbeat(min(timeout, self.options.timeout) / 2)
        sid = self._session_id
        try:
            if sid is not None and self._ends_session():
                left = deadline - time.monotonic()
                if left <= 0:
                    self._last_error = "session not ended: no time left in the shutdown timeout"
                else:
                    self._end_session(sid, left)
        finally:
            self._sender.close()
            self._http.close()

    def _end_session(self, sid: str, timeout: float) -> None:
        reason = self._crash_reason
        if reason is None:
            op, body = "end", b"{}"
        else:
            op, body = "crash", _encode({"reason": reason})
        outcome = self._post(self._url(sid, op), body, timeout)
        if outcome.ok:
            self._ended = op
            return
        self._last_error = f"{op}: {outcome.describe()}"
        with guarded():
            _log.warning("evlog: could not %s session %s on the session server: %s", op, sid, outcome.describe())

    def reset_after_fork(self) -> None:
        # The child has no heartbeat thread and must not share the parent's sockets. A session the parent
        # already has stays the parent's: the child sends to it but neither heartbeats nor ends it.
        self._lock = threading.Lock()
        self._replacing = threading.Lock()
        self._heartbeat_stop = threading.Event()
        self._heartbeat = None
        self._http.reset_after_fork()
        self._sender.reset_after_fork()
        if self._session_id is not None:
            self._inherited = True
            self._owns_session = False

    def stats(self) -> Mapping[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["session_id"] = self._session_id
            if self._last_error:
                out["last_error"] = self._last_error
            if self._ended:
                out["session_ended"] = self._ended
        return out


def _is_gone(outcome: HttpOutcome) -> bool:
    return outcome.status == 404
