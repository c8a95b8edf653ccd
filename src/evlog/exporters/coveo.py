"""``coveo``: Coveo Usage Analytics custom events (UA Write API v15), one POST per event.

The API has no batch endpoint for custom events, so a batch fans out into one request per event over one
keep-alive session, with bounded concurrency. Every event gets its own outcome: accepted, retried (429, 5xx,
no response) or refused (a documented limit broken before sending, or a permanent 4xx with Coveo's message).
Coveo stamps events on receipt (there is no time field), so events are sent as soon as they are batched.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from evlog._errors import EventRejected
from evlog._event import Event
from evlog._serialize import encode_safely
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes
from evlog.exporters.http import HttpClient, HttpOutcome, ParallelSender, check_url

__all__ = [
    "CoveoExporter",
    "CoveoOptions",
    "build_payload",
    "client_id_for",
    "default_endpoint",
    "normalize_key",
]

#: coveo.analytics derives ``setClientId(value, namespace)`` as uuid5(value, uuid5(namespace, this root)); we
#: use the same scheme so a browser calling ``setClientId(userId, "evlog")`` lands on the same visitor.
_COVEO_ROOT_NAMESPACE = uuid.UUID("38824e1f-37f5-42d3-8372-a4b8fa9df946")

#: custom_ids keys (compared lower-cased, without ``_`` and ``-``) that identify a device, in preference order.
_DEVICE_ID_KEYS = ("clientid", "deviceid", "stableid", "visitorid", "anonymousid")

_ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_TRACKING_ID = re.compile(r"[a-z0-9_]+")
_NOT_KEY_CHAR = re.compile(r"[^a-z0-9_]")
_WHITESPACE = re.compile(r"\s")

#: Column sizes Coveo documents (docs.coveo.com/en/2650 and /en/1937).
SHORT_LIMIT = 128
LONG_LIMIT = 1024
LANGUAGE_LIMIT = 256
CUSTOM_DATA_LIMIT = 32_500


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _max_len(limit: int) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is not None and len(value) > limit:
            raise ValueError(f"{attribute.name} is {len(value)} characters; Coveo accepts at most {limit}")

    return check


def _tracking(_inst: object, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not _TRACKING_ID.fullmatch(value):
        raise ValueError(f"tracking_id may hold only lower-case letters, digits and '_', got {value!r}")


def _language(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if not value or len(value) > LANGUAGE_LIMIT:
        raise ValueError(f"language must be a non-empty ISO 639-1 code (Coveo requires it), got {value!r}")


@attrs.frozen
class CoveoOptions:
    """Where and how to send; per-event values in ``data`` override the ``origin_*`` and ``tracking_id`` ones."""

    #: Coveo organization id: the host is ``<org_id>.analytics.org.coveo.com``.
    org_id: str | None = None
    #: API key or search token allowed to push Analytics data (sent as ``Authorization: Bearer``).
    access_token: str | None = attrs.field(default=None, repr=False)
    #: Use the HIPAA host ``<org_id>.analytics.orghipaa.coveo.com``.
    hipaa: bool = False
    #: Full URL of the custom-event endpoint, instead of the one built from ``org_id`` (proxies, tests).
    endpoint: str | None = None
    #: ISO 639-1 language sent when the event's user has no locale (Coveo requires a language).
    language: str = attrs.field(default="en", validator=_language)
    #: Search hub of the interface (``originLevel1``).
    origin_level_1: str | None = attrs.field(default=None, validator=_max_len(SHORT_LIMIT))
    #: Tab (``originLevel2``).
    origin_level_2: str | None = attrs.field(default=None, validator=_max_len(SHORT_LIMIT))
    #: Referrer URL (``originLevel3``).
    origin_level_3: str | None = attrs.field(default=None, validator=_max_len(LONG_LIMIT))
    #: Deployment the event comes from, e.g. ``Search``, ``InternalSearch``, ``CommunitySearch``.
    origin_context: str | None = attrs.field(default=None, validator=_max_len(SHORT_LIMIT))
    #: Web property the events belong to (lower-case letters, digits and ``_``).
    tracking_id: str | None = attrs.field(default=None, validator=_tracking)
    #: ``eventType`` for events without a category; with None such events are refused.
    default_event_type: str | None = attrs.field(default="evlog", validator=_max_len(SHORT_LIMIT))
    #: Send the user's id as ``username`` (off: user ids stay out of Coveo; needs the impersonate privilege).
    send_username: bool = False
    #: Namespace for client ids derived from non-UUID ids (same scheme as coveo.analytics ``setClientId``).
    client_id_namespace: str = "evlog"
    #: Seconds per request, at most.
    timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Requests in flight at once.
    max_concurrency: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: Allow plain http to a non-loopback ``endpoint`` (the token would travel in clear text).
    allow_insecure_http: bool = False
    #: Events per export call (each is still its own request).
    max_batch_size: int | None = attrs.field(default=None, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.endpoint is not None:
            check_url(self.endpoint, option="endpoint", allow_insecure_http=self.allow_insecure_http)
        elif self.org_id is None:
            raise ValueError(
                "set org_id (EVLOG_COVEO_ORG_ID) to send to Coveo, or endpoint (EVLOG_COVEO_ENDPOINT) for a proxy"
            )
        if self.org_id is not None and not _ORG_ID.fullmatch(self.org_id):
            raise ValueError(f"org_id must be letters, digits and '-' (it becomes a host name), got {self.org_id!r}")
        if self.endpoint is None and not self.access_token:
            raise ValueError(
                "set access_token (EVLOG_COVEO_ACCESS_TOKEN): an API key or search token allowed to push Analytics data"
            )

    @property
    def url(self) -> str:
        if self.endpoint is not None:
            return self.endpoint
        assert self.org_id is not None
        return default_endpoint(self.org_id, hipaa=self.hipaa)


def default_endpoint(org_id: str, *, hipaa: bool = False) -> str:
    """The organization endpoint for custom events (Coveo routes it to the org's region)."""
    domain = "analytics.orghipaa.coveo.com" if hipaa else "analytics.org.coveo.com"
    return f"https://{org_id.lower()}.{domain}/rest/ua/v15/analytics/custom"


def _with_visitor(url: str, client_id: str | None) -> str:
    """``url`` with ``visitor=<clientId>``, as coveo.analytics sends it (kept alongside any existing query)."""
    if client_id is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "visitor"]
    query.append(("visitor", client_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


def normalize_key(key: str) -> str:
    """A customData key as Coveo stores it: lower case, whitespace and anything but ``[a-z0-9_]`` as ``_``.

    Accents are dropped first (``é`` -> ``e``) so that words stay readable.
    """
    decomposed = unicodedata.normalize("NFKD", key)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return _NOT_KEY_CHAR.sub("_", _WHITESPACE.sub("_", plain)) or "_"


def _as_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def client_id_for(identity: str, namespace: str = "evlog") -> str:
    """``identity`` itself when it is a UUID, else a UUID derived from it that stays the same across runs."""
    as_uuid = _as_uuid(identity)
    if as_uuid is not None:
        return as_uuid
    return str(uuid.uuid5(uuid.uuid5(_COVEO_ROOT_NAMESPACE, namespace), identity))


def _identity(event: Event) -> str | None:
    """The device id when the user has one (a client id is a device), else the user id."""
    user = event.user
    if user is None:
        return None
    by_key = {re.sub(r"[_-]", "", key.lower()): value for key, value in user.custom_ids.items() if value}
    for key in _DEVICE_ID_KEYS:
        if key in by_key:
            return by_key[key]
    return None if user.id is None or user.id == "" else str(user.id)


# Coveo fields an event may carry in ``data``: name -> (length limit, truncate instead of refusing).
_STRING_FIELDS: dict[str, tuple[int | None, bool]] = {
    "originLevel1": (SHORT_LIMIT, False),
    "originLevel2": (SHORT_LIMIT, False),
    "originLevel3": (LONG_LIMIT, True),
    "originContext": (SHORT_LIMIT, False),
    "lastSearchQueryUid": (None, False),
    "splitTestRunName": (SHORT_LIMIT, False),
    "splitTestRunVersion": (SHORT_LIMIT, False),
    "userAgent": (LONG_LIMIT, True),
    "userDisplayName": (SHORT_LIMIT, False),
    "trackingId": (None, False),
    "language": (LANGUAGE_LIMIT, False),
}
_JSON = {"Content-Type": "application/json"}
_SPECIAL_FIELDS = ("outcome", "clientId")
FIELD_NAMES = frozenset(_STRING_FIELDS) | frozenset(_SPECIAL_FIELDS)


def _check_string(name: str, value: Any) -> str:
    limit, truncate = _STRING_FIELDS.get(name, (SHORT_LIMIT, False))
    if not isinstance(value, str):
        raise EventRejected(f"{name} must be a string, got {type(value).__name__}")
    if limit is not None and len(value) > limit:
        if truncate:
            return value[:limit]
        raise EventRejected(f"{name} is {len(value)} characters; Coveo accepts at most {limit}")
    return value


def _check_field(name: str, value: Any) -> Any:
    if name == "outcome":
        if type(value) is not int or not -5 <= value <= 5:
            raise EventRejected(f"outcome must be an integer from -5 to 5, got {value!r:.40}")
        return value
    if name == "clientId":
        as_uuid = _as_uuid(value) if isinstance(value, str) else None
        if as_uuid is None:
            raise EventRejected(f"clientId must be a UUID, got {value!r:.60}")
        return as_uuid
    text = _check_string(name, value)
    if name == "trackingId" and not _TRACKING_ID.fullmatch(text):
        raise EventRejected(f"trackingId may hold only lower-case letters, digits and '_', got {text!r:.60}")
    if name == "language" and not text:
        raise EventRejected("language must not be empty (Coveo requires it)")
    return text


def _language_of(event: Event, default: str) -> str:
    locale = event.user.locale if event.user is not None else None
    if locale:
        first = re.split(r"[-_.@]", locale.strip(), maxsplit=1)[0].lower()
        if first:
            return first
    return default


def _custom_data(event: Event, data: Mapping[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {"level": event.level.value}
    if event.labels:
        extras["labels"] = ",".join(event.labels)
    if event.message is not None:
        extras["message"] = event.message
    if event.value is not None:
        extras["value"] = event.value
    if event.session_id is not None:
        extras["session_id"] = event.session_id
    if event.exception is not None:
        extras["exception_type"] = event.exception.exception_type
        extras["exception_message"] = event.exception.exception_msg
    custom: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in data.items():
        norm = normalize_key(key)
        if norm in origin:
            raise EventRejected(
                f"customData keys {origin[norm]!r} and {key!r} both become {norm!r} once normalised as Coveo does"
            )
        origin[norm] = key
        custom[norm] = value
    for key, value in extras.items():
        custom.setdefault(key, value)  # the app's own data wins over the event's fields
    size = len(encode_safely(custom).decode("utf-8"))
    if size > CUSTOM_DATA_LIMIT:
        raise EventRejected(f"customData is {size} characters as JSON; Coveo stores at most {CUSTOM_DATA_LIMIT}")
    return custom


def build_payload(event: Event, options: CoveoOptions) -> dict[str, Any]:
    """The JSON body for one event; ``EventRejected`` when it breaks a documented limit."""
    data = event.data
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name in FIELD_NAMES and value is not None:
            fields[name] = _check_field(name, value)
    event_type = event.category or options.default_event_type
    if not event_type:
        raise EventRejected("eventType is required: give the event a category or set default_event_type")
    for name, text in (("eventType", event_type), ("eventValue", event.name)):
        if len(text) > SHORT_LIMIT:
            raise EventRejected(f"{name} is {len(text)} characters; Coveo accepts at most {SHORT_LIMIT}")
    user = event.user
    user_id = str(user.id) if user is not None and user.id is not None else None
    body: dict[str, Any] = {
        "language": fields.pop("language", None) or _language_of(event, options.language),
        "eventType": event_type,
        "eventValue": event.name,
        "anonymous": not user_id,
    }
    if user is not None and user.user_agent and "userAgent" not in fields:
        body["userAgent"] = _check_field("userAgent", user.user_agent)
    for name, value in (
        ("originLevel1", options.origin_level_1),
        ("originLevel2", options.origin_level_2),
        ("originLevel3", options.origin_level_3),
        ("originContext", options.origin_context),
        ("trackingId", options.tracking_id),
    ):
        if value is not None:
            body[name] = value
    if options.send_username and user_id:
        if len(user_id) > SHORT_LIMIT:
            raise EventRejected(f"username is {len(user_id)} characters; Coveo accepts at most {SHORT_LIMIT}")
        body["username"] = user_id
    if "clientId" not in fields:
        identity = _identity(event)
        if identity is not None:
            body["clientId"] = client_id_for(identity, options.client_id_namespace)
    body.update(fields)
    body["customData"] = _custom_data(event, {k: v for k, v in data.items() if k not in FIELD_NAMES})
    return body


class CoveoExporter(Exporter):
    """See ``docs/exporters/coveo.md`` for the field mapping, limits and retry rules."""

    name = "coveo"
    Options = CoveoOptions
    options: CoveoOptions
    default_max_batch_size = 100

    def __init__(self, options: CoveoOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        opts = self.options
        headers = {"Authorization": f"Bearer {opts.access_token}"} if opts.access_token else {}
        # HttpClient keeps no cookies: Coveo answers events without a clientId with a visitor cookie, which a
        # shared session would replay, merging every later anonymous event into one visitor.
        self._http = HttpClient(
            timeout=opts.timeout, headers=headers, secrets=[opts.access_token], pool_size=opts.max_concurrency
        )
        self._sender = ParallelSender(opts.max_concurrency, name="evlog-coveo")
        self._lock = threading.Lock()
        self._visitor_id: str | None = None
        self._visit_id: str | None = None

    def __repr__(self) -> str:
        return f"<CoveoExporter {self.options.url!r}>"

    def _send(self, payload: bytes, client_id: Any, deadline: float | None) -> HttpOutcome | None:
        """One event's answer; None when the deadline passed first (it is retried, never sent twice)."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        url = _with_visitor(self.options.url, client_id)
        outcome = self._http.request("POST", url, data=payload, headers=_JSON, timeout=left)
        if outcome.ok:
            self._note_visit(outcome)
        return outcome

    def _note_visit(self, outcome: HttpOutcome) -> None:
        reply = outcome.json()
        if isinstance(reply, dict):
            with self._lock:
                if isinstance(reply.get("visitorId"), str):
                    self._visitor_id = reply["visitorId"]
                if isinstance(reply.get("visitId"), str):
                    self._visit_id = reply["visitId"]

    def _describe(self, outcome: HttpOutcome) -> str:
        if outcome.status is None:
            return f"no response ({outcome.error})"
        reply = outcome.json()
        kind = reply.get("type") if isinstance(reply, dict) else None
        message = outcome.server_message()
        text = f"Coveo HTTP {outcome.status}" + (f" {kind}" if isinstance(kind, str) and kind else "")
        text += f": {message}" if message else ""
        if outcome.status in (401, 403):
            text += " (check access_token and its Analytics data privilege)"
        return text

    def export(self, batch: Batch) -> ExportResult:
        outcomes = ExportOutcomes(batch, label="coveo")
        # Each body is mapped and encoded here, in its event's guard, before any request: an event that cannot be
        # encoded is rejected alone instead of failing inside a sender thread.
        mapped = outcomes.prepare(batch.events, lambda event: build_payload(event, self.options))
        client_ids = {event.event_id: body.get("clientId") for event, body in mapped}
        bodies = outcomes.encode_mapped(mapped)
        calls = [
            functools.partial(self._send, payload, client_ids[event.event_id], batch.deadline)
            for event, payload in bodies
        ]
        answers = self._sender.run(calls, deadline=batch.deadline)
        for (event, _payload), outcome in zip(bodies, answers, strict=True):
            if outcome is None:
                outcomes.retry((event,), "not sent before the export deadline")
            else:
                outcomes.record((event,), outcome, reason=self._describe(outcome), one_event=True)
        return outcomes.result()

    def stats(self) -> Mapping[str, Any]:
        with self._lock:
            return {"last_visitor_id": self._visitor_id, "last_visit_id": self._visit_id}

    def shutdown(self, timeout: float) -> None:
        self._sender.close()
        self._http.close()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._sender.reset_after_fork()
        self._http.reset_after_fork()
