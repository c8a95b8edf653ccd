"""``statsig``: custom events to Statsig's ``POST /v1/log_event``.

The wire format follows what Statsig's own server SDKs send (gzip, ``STATSIG-*`` headers, one ``user`` per
event, ``privateAttributes`` stripped), not only the shorter HTTP API page. Statsig's documented limits are
checked here, per event, before anything is sent: the server drops whole requests or events silently, so a
single bad event would otherwise vanish without a count, or cost every other event of its request.
"""

from __future__ import annotations

import math
import platform
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from evlog._errors import EventRejected
from evlog._event import Event, Level, User
from evlog._serialize import dumps
from evlog._values import to_json_value
from evlog._version import __version__
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes
from evlog.exporters.http import HttpClient, HttpOutcome, check_url

__all__ = [
    "DEFAULT_ENDPOINT",
    "MAX_METADATA_CHARS",
    "MAX_REQUEST_BYTES",
    "MAX_STRING_CHARS",
    "RESERVED_METADATA_KEYS",
    "SDK_TYPE",
    "StatsigExporter",
    "StatsigOptions",
]

DEFAULT_ENDPOINT = "https://events.statsigapi.net/v1/log_event"
#: ``eventName`` and string ``value``: "String fields have a limit of 64 on its length".
MAX_STRING_CHARS = 64
#: ``metadata``: "Object fields have an overall limit of 4096 on its stringified length".
MAX_METADATA_CHARS = 4096
#: "exceeding the backend request size limit (10MB) will drop requests"; measured before compression.
MAX_REQUEST_BYTES = 10_000_000
SDK_TYPE = "evlog-python"
#: Metadata keys filled from the event's own fields (they win over ``data`` keys of the same name).
RESERVED_METADATA_KEYS = ("level", "category", "labels", "message")
#: Added to metadata when keys had to be dropped to fit ``MAX_METADATA_CHARS``; lists the dropped keys.
TRUNCATION_KEY = "evlog_truncated"

# "Statsig drops events that match this regex/contain this character set: \\[\]{}<>#=;&$%|\u0000\n\r"
_BANNED_NAME_CHARS = re.compile(r"[\\\[\]{}<>#=;&$%|\x00\n\r]")
# Room for everything around the events: {"events":[...],"statsigMetadata":{...}}.
_ENVELOPE_SLACK = 512


def _dumps(value: Any) -> str:
    return dumps(value).decode("utf-8")


def _stringify(value: Any) -> str:
    """A metadata value as its JSON text (Statsig's documented schema), by hand for scalars: no encoder call
    per value. Floats use ``repr`` as ``json.dumps`` does; containers take one encoder call."""
    tp = type(value)
    if tp is str:
        return value  # type: ignore[no-any-return]
    if tp is int:
        return str(value)
    if tp is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if tp is float:
        return repr(value) if math.isfinite(value) else to_json_value(value)[0]  # type: ignore[no-any-return]
    try:
        return _dumps(value)
    except (TypeError, ValueError, RecursionError):  # a value a processor added after the conversion
        return _dumps(to_json_value(value)[0])


_LEVEL_TEXT = {level: level.value for level in Level}
_TAKEN = frozenset((*RESERVED_METADATA_KEYS, TRUNCATION_KEY))


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _check_api_key(_inst: object, _attribute: object, value: str) -> None:
    # Never quote the value: it is a secret.
    if not value or not value.strip():
        raise ValueError("api_key must not be empty (a Statsig Server Secret or Client SDK key)")
    if any(ch in value for ch in "\r\n\x00") or value != value.strip():
        raise ValueError("api_key contains whitespace or control characters (check how it was pasted)")


def _check_endpoint(inst: StatsigOptions, _attribute: object, value: str) -> None:
    check_url(value, option="exporters.statsig.endpoint", allow_insecure_http=inst.allow_insecure_http)


def _check_batch_size(_inst: object, _attribute: object, value: int) -> None:
    if not 1 <= value <= 10_000:
        raise ValueError(f"max_batch_size must be between 1 and 10000, got {value!r}")


def _check_request_bytes(_inst: object, _attribute: object, value: int) -> None:
    if not 4_096 <= value <= MAX_REQUEST_BYTES:
        raise ValueError(f"max_request_bytes must be between 4096 and {MAX_REQUEST_BYTES}, got {value!r}")


@attrs.frozen(kw_only=True)
class StatsigOptions:
    #: Server Secret key (``secret-...``) or Client SDK key (``client-...``). Required; never logged.
    api_key: str = attrs.field(repr=False, validator=_check_api_key)
    #: Where events are posted. Plain http is refused except on loopback, unless ``allow_insecure_http``.
    endpoint: str = attrs.field(default=DEFAULT_ENDPOINT, validator=_check_endpoint)
    #: Sent as every user's ``statsigEnvironment.tier`` (``production``, ``staging``, ``development``...).
    environment_tier: str | None = None
    #: Events per export. Statsig documents no maximum; its Python SDK sends up to 1000 per request.
    max_batch_size: int = attrs.field(default=1000, validator=_check_batch_size)
    #: gzip the body (``Content-Encoding: gzip``), as Statsig's SDKs do.
    compress: bool = True
    #: Send metadata values as strings (the documented schema); off sends JSON values as they are.
    stringify_metadata: bool = True
    #: Seconds one request may take (Statsig's Python SDK uses 20).
    timeout: float = attrs.field(default=20.0, validator=_positive)
    #: Largest uncompressed body per request; bigger batches are split into several requests.
    max_request_bytes: int = attrs.field(default=MAX_REQUEST_BYTES, validator=_check_request_bytes)
    #: Allow a plain-http endpoint on a non-loopback host (the API key would travel in clear text).
    allow_insecure_http: bool = False


class StatsigExporter(Exporter):
    """Posts batches to ``log_event``; see ``docs/exporters/statsig.md`` for the mapping and the limits."""

    name = "statsig"
    Options = StatsigOptions
    options: StatsigOptions
    default_max_batch_size = 1000

    def __init__(self, options: StatsigOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        opts = self.options
        self._http = HttpClient(
            timeout=opts.timeout,
            headers={
                "STATSIG-API-KEY": opts.api_key,
                "STATSIG-SDK-TYPE": SDK_TYPE,
                "STATSIG-SDK-VERSION": __version__,
                "Content-Type": "application/json",
            },
            secrets=[opts.api_key],
        )
        self._session_id = str(uuid.uuid4())
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {"metadata_truncated": 0, "values_truncated": 0, "split_exports": 0}
        self._counting = True
        self._last_user: tuple[User | None, dict[str, Any] | None] = (None, None)

    # --- mapping ---------------------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        if not self._counting:  # a retry re-prepares events that were already counted on the first attempt
            return
        with self._lock:
            self._counts[key] += n

    def _metadata(self, event: Event) -> tuple[dict[str, Any], int]:
        """The metadata and an upper bound of its stringified length (exact length only when needed)."""
        stringify = self.options.stringify_metadata
        level = _LEVEL_TEXT[event.level]
        meta: dict[str, Any] = {"level": level}
        size = 5 + len(level)
        if event.category is not None:
            meta["category"] = event.category
            size += 8 + len(event.category)
        if event.labels:
            meta["labels"] = labels = _dumps(list(event.labels)) if stringify else list(event.labels)
            size += 6 + len(labels)
        if event.message is not None:
            meta["message"] = event.message
            size += 7 + len(event.message)
        for key, value in event.data.items():
            target = key
            while target in meta or target in _TAKEN:
                target = "data_" + target
            if stringify:
                meta[target] = text = value if type(value) is str else _stringify(value)
                size += len(target) + len(text)
            else:
                meta[target] = value
        # Escaping makes one character at most six (\u0000); each entry adds quotes, a colon and a comma.
        return meta, 6 * size + 6 * len(meta) + 2 if stringify else -1

    def _user(self, user: User | None) -> dict[str, Any] | None:
        # Events logged with the same User share its wire form (read-only: it is only encoded).
        if user is not None and user is self._last_user[0]:
            return self._last_user[1]  # type: ignore[no-any-return]
        wire = self._user_wire(user)
        if user is not None:
            self._last_user = (user, wire)
        return wire

    def _user_wire(self, user: User | None) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if user is not None:
            for wire, value in (
                ("userID", None if user.id is None else str(user.id)),  # Statsig's userID is a string
                ("email", user.email),
                ("ip", user.ip),
                ("userAgent", user.user_agent),
                ("country", user.country),
                ("locale", user.locale),
                ("appVersion", user.app_version or self.app.release),
            ):
                if value is not None:
                    out[wire] = value
            if user.custom:
                out["custom"] = user.custom  # converted when the event was built (shared, not copied)
            if user.custom_ids:
                out["customIDs"] = user.custom_ids
            # user.private_attributes: never sent (Statsig's own SDKs strip them before logging).
        elif self.app.release:
            out["appVersion"] = self.app.release
        tier = self.options.environment_tier or self.app.environment
        if tier:
            out["statsigEnvironment"] = {"tier": tier}
        return out or None

    def _value(self, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return to_json_value(value)[0]
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            self._count("values_truncated")
            return value[:MAX_STRING_CHARS]
        return value

    def _wire(self, event: Event) -> dict[str, Any]:
        """The event's wire form; ``EventRejected`` naming the Statsig rule it breaks when it cannot be sent."""
        name = event.name
        if not isinstance(name, str) or not name:
            raise EventRejected("eventName must be a non-empty string")
        if len(name) > MAX_STRING_CHARS:
            raise EventRejected(f"event name is {len(name)} characters, Statsig's limit is {MAX_STRING_CHARS}")
        bad = _BANNED_NAME_CHARS.search(name)
        if bad:
            raise EventRejected(
                f"event name contains {bad.group()!r}, which Statsig drops events for "
                "(banned characters: \\ [ ] { } < > # = ; & $ % | NUL CR LF)"
            )
        wire: dict[str, Any] = {"eventName": name}
        if event.value is not None:
            wire["value"] = self._value(event.value)
        wire["time"] = event.timestamp_ms
        user = self._user(event.user)
        if user is not None:
            wire["user"] = user
        meta, bound = self._metadata(event)
        # With string values, a cheap upper bound spares the exact length for all but large metadata.
        needs_check = bound < 0 or bound > MAX_METADATA_CHARS
        if needs_check and len(_dumps(meta)) > MAX_METADATA_CHARS:
            meta = _fit_metadata(meta, MAX_METADATA_CHARS)
            self._count("metadata_truncated")
        wire["metadata"] = meta
        return wire

    # --- sending ---------------------------------------------------------------------------------------

    def _requests(self, outcomes: ExportOutcomes, wires: list[tuple[Event, Any]]) -> list[tuple[list[Event], bytes]]:
        """The request bodies for the mapped events: the whole batch in one encoder call when it fits in one
        request (the common case); otherwise each event encoded on its own (in its guard) and grouped."""
        if not wires:
            return []
        budget = self.options.max_request_bytes - _ENVELOPE_SLACK
        try:
            body = dumps({"events": [wire for _event, wire in wires], "statsigMetadata": self._envelope})
        except (TypeError, ValueError, RecursionError):
            body = b""  # some event needs the per-event path (a value a processor added after the conversion)
        if body and len(body) <= budget:
            return [([event for event, _wire in wires], body)]
        encoded: list[tuple[Event, bytes]] = []
        for event, payload in outcomes.encode_mapped(wires):
            if len(payload) > budget:
                outcomes.reject(
                    event,
                    f"statsig: event is {len(payload)} bytes serialized, more than a whole request may be "
                    f"({self.options.max_request_bytes} bytes)",
                )
            else:
                encoded.append((event, payload))
        return [([event for event, _ in chunk], self._body(chunk)) for chunk in _chunks(encoded, budget)]

    @property
    def _envelope(self) -> dict[str, Any]:
        return {
            "sdkType": SDK_TYPE,
            "sdkVersion": __version__,
            "languageVersion": platform.python_version(),
            "sessionID": self._session_id,
        }

    def _body(self, chunk: list[tuple[Event, bytes]]) -> bytes:
        events = b",".join(payload for _event, payload in chunk)
        return b'{"events":[' + events + b'],"statsigMetadata":' + dumps(self._envelope) + b"}"

    def _post(self, events: list[Event], body: bytes, batch: Batch) -> HttpOutcome:
        headers = {
            "STATSIG-CLIENT-TIME": str(int(time.time() * 1000)),
            "STATSIG-EVENT-COUNT": str(len(events)),
            "STATSIG-SERVER-SESSION-ID": self._session_id,
            "STATSIG-RETRY-COUNT": str(batch.attempt),
        }
        return self._http.request(
            "POST",
            self.options.endpoint,
            data=body,
            headers=headers,
            compress=self.options.compress,
            timeout=batch.time_left(self.options.timeout),
        )

    def export(self, batch: Batch) -> ExportResult:
        self._counting = batch.attempt == 0
        outcomes = ExportOutcomes(batch, label="statsig")
        requests = self._requests(outcomes, outcomes.prepare(batch.events, self._wire))
        if len(requests) > 1:
            self._count("split_exports")
        for index, (events, body) in enumerate(requests):
            if batch.deadline is not None and batch.time_left(1.0) <= 0:
                unsent = [event for later, _ in requests[index:] for event in later]
                outcomes.retry(unsent, "statsig: export deadline reached before every request was sent")
                break
            outcome = self._post(events, body, batch)
            parsed = outcome.json() if outcome.ok else None
            if isinstance(parsed, dict) and parsed.get("success") is False:
                reason = f"statsig: HTTP {outcome.status} with success=false: {outcome.server_message()}"
                outcomes.refuse(events, reason)
                continue
            outcomes.record(events, outcome, reason=f"statsig: {outcome.describe()}")
            if not outcome.ok and outcome.retryable:
                # The backend is struggling: keep the rest of the batch for the retry instead of pushing on.
                rest = [event for later, _ in requests[index + 1 :] for event in later]
                outcomes.retry(rest, f"statsig: {outcome.describe()}")
                break
        return outcomes.result()

    # --- lifecycle -------------------------------------------------------------------------------------

    def stats(self) -> Mapping[str, Any]:
        """``metadata_truncated`` / ``values_truncated``: events sent shortened; ``split_exports``: batches
        that needed more than one request to stay under the size limit."""
        with self._lock:
            return dict(self._counts)

    def shutdown(self, timeout: float) -> None:
        self._http.close()

    def reset_after_fork(self) -> None:
        self._http.reset_after_fork()
        self._lock = threading.Lock()
        # The child is a new process: Statsig's SDKs use one session id per process.
        self._session_id = str(uuid.uuid4())


def _chunks(encoded: list[tuple[Event, bytes]], budget: int) -> list[list[tuple[Event, bytes]]]:
    """Consecutive groups whose request body stays under ``budget`` bytes."""
    chunks: list[list[tuple[Event, bytes]]] = []
    current: list[tuple[Event, bytes]] = []
    size = 0
    for item in encoded:
        cost = len(item[1]) + 1
        if current and size + cost > budget:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def _fit_metadata(meta: dict[str, Any], limit: int) -> dict[str, Any]:
    """``meta`` without its largest entries, so that it stringifies to at most ``limit`` characters.

    Dropping whole entries (largest first) keeps every value that is sent intact and readable; the names of
    the dropped keys go under ``TRUNCATION_KEY`` so the loss is visible in Statsig too.
    """
    sizes = {key: len(_dumps({key: value})) - 1 for key, value in meta.items()}  # '"key":value' plus a comma
    marker_cost = len(_dumps({TRUNCATION_KEY: ""})) - 1
    kept = dict(meta)
    total = 2 + sum(sizes.values()) + marker_cost
    dropped: list[str] = []
    for key in sorted(meta, key=lambda k: sizes[k], reverse=True):
        if total <= limit:
            break
        del kept[key]
        total -= sizes[key]
        dropped.append(key)
    note = ",".join(dropped)
    out = {**kept, TRUNCATION_KEY: note}
    while len(_dumps(out)) > limit and note:
        note = note[: max(0, len(note) - max(1, len(_dumps(out)) - limit))]
        out[TRUNCATION_KEY] = note
    return out
