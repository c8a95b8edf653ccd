"""``adcp``: conversion and marketing events to an AdCP seller agent with the ``log_event`` task, over MCP.

Each batch is one MCP ``tools/call`` of ``log_event`` (AdCP 3.2). Events that break the schema's rules are
refused here, one by one, so they never cost the rest of their batch. The request carries an
``idempotency_key`` derived from the batch id and the request body, so a retry of the same batch is answered
by the seller's replay cache and never counted twice, while a retry of only part of a batch (a different
body) gets a different key instead of an ``IDEMPOTENCY_CONFLICT``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from evlog._event import Event
from evlog.exporters._adcp_mapping import ACTION_SOURCES, MappingDefaults, map_event
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._mcp import McpClient, McpReply
from evlog.exporters._result import ExportOutcomes
from evlog.exporters.http import HttpClient, check_url, outcome_to_result

__all__ = ["AdcpExporter", "AdcpOptions"]

_log = logging.getLogger("evlog.adcp")

#: ``log_event`` accepts at most this many events per request (``maxItems`` in the request schema).
MAX_EVENTS = 10_000
#: Error codes that mean "try the same request again later" when the error does not say its ``recovery``.
TRANSIENT_CODES = frozenset({"RATE_LIMITED", "SERVICE_UNAVAILABLE", "IDEMPOTENCY_IN_FLIGHT"})
#: JSON-RPC error codes AdCP reserves for infrastructure answers before the tool runs.
_RPC_CODES = {-32029: "RATE_LIMITED", -32028: "AUTH_MISSING", -32027: "SERVICE_UNAVAILABLE"}
#: Task statuses that mean the request was not carried out.
_FAILED_STATUSES = frozenset({"failed", "rejected", "canceled", "auth-required", "input-required"})


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _action_source(_inst: object, _attribute: object, value: str | None) -> None:
    if value is not None and value not in ACTION_SOURCES:
        raise ValueError(f"action_source must be one of {', '.join(sorted(ACTION_SOURCES))}, got {value!r}")


@attrs.frozen(kw_only=True)
class AdcpOptions:
    #: The seller's MCP endpoint, e.g. ``https://seller.example/mcp``.
    agent_url: str
    #: The event source configured on the account with ``sync_event_sources``.
    event_source_id: str = attrs.field(validator=attrs.validators.min_len(1))
    #: The seller-issued credential, sent in ``auth_header``. Never logged.
    token: str | None = attrs.field(default=None, repr=False)
    #: Header that carries the token. AdCP's canonical one is ``Authorization``; some sellers want ``x-adcp-auth``.
    auth_header: str = attrs.field(default="Authorization", validator=attrs.validators.min_len(1))
    #: Scheme put before the token (``Bearer <token>``); empty sends the bare token (``x-adcp-auth`` style).
    auth_scheme: str = "Bearer"
    #: Marks the events as test events: visible in the seller's test UI, no effect on production reporting.
    test_event_code: str | None = None
    #: ``action_source`` for events whose data does not name one (website, app, offline, in_store...).
    action_source: str | None = attrs.field(default=None, validator=_action_source)
    #: ``event_source_url`` for events whose data does not give one.
    event_source_url: str | None = None
    #: ``surface`` object for events whose data does not give one, e.g. ``{"category": "website"}``.
    surface: dict[str, Any] | None = None
    #: Events per request; AdCP allows at most 10,000.
    max_batch_size: int = attrs.field(
        default=MAX_EVENTS, validator=[attrs.validators.ge(1), attrs.validators.le(MAX_EVENTS)]
    )
    #: Seconds each HTTP request may take (also bounded by the batch's retry deadline).
    timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Allow plain http to a non-loopback seller (the token and hashed identifiers travel unencrypted).
    allow_insecure_http: bool = False
    #: AdCP release the requests are written for, sent as ``adcp_version``.
    adcp_version: str = "3.2"
    #: MCP protocol revision asked for in ``initialize`` (the server's answer is what is then sent).
    protocol_version: str = "2025-06-18"

    def __attrs_post_init__(self) -> None:
        check_url(self.agent_url, option="agent_url", allow_insecure_http=self.allow_insecure_http)


@attrs.frozen
class _AdcpError:
    code: str
    message: str
    recovery: str
    retry_after: float | None

    @property
    def transient(self) -> bool:
        return self.recovery == "transient"

    def describe(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def _retry_after(value: Any) -> float | None:
    """AdCP's rule: ceil, clamp to [1, 3600] seconds; non-numbers and non-finite values count as absent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(min(3600, max(1, math.ceil(value))))


def _adcp_error(raw: Mapping[str, Any]) -> _AdcpError:
    code = str(raw.get("code") or "UNKNOWN")
    recovery = raw.get("recovery")
    if recovery not in ("transient", "correctable", "terminal"):
        # Unknown codes without a recovery are taken as terminal (transport-errors.mdx): retrying a request
        # the seller does not understand only adds load.
        recovery = "transient" if code in TRANSIENT_CODES else "terminal"
    message = str(raw.get("message") or "")
    field = raw.get("field")
    if field:
        message = f"{message} (field {field})" if message else f"field {field}"
    return _AdcpError(code, message, str(recovery), _retry_after(raw.get("retry_after")))


def _text_json(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first JSON object in the tool result's text content (the fallback to ``structuredContent``)."""
    content = result.get("content")
    if not isinstance(content, list):
        return None
    for item in content:
        if isinstance(item, Mapping) and isinstance(item.get("text"), str) and len(item["text"]) <= 1_000_000:
            try:
                parsed = json.loads(item["text"])
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def _first_text(result: Mapping[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        for item in content:
            if isinstance(item, Mapping) and isinstance(item.get("text"), str):
                return str(item["text"])[:300]
    return ""


def _errors_of(payload: Mapping[str, Any] | None) -> list[_AdcpError]:
    if not payload:
        return []
    found = []
    envelope = payload.get("adcp_error")
    if isinstance(envelope, Mapping):
        found.append(_adcp_error(envelope))
    errors = payload.get("errors")
    if isinstance(errors, list):
        for raw in errors:
            if isinstance(raw, Mapping):
                error = _adcp_error(raw)
                if not any(e.code == error.code for e in found):
                    found.append(error)
    return found


def idempotency_key(batch_id: str, arguments: Mapping[str, Any]) -> str:
    """Same batch and same body: same key. Any other body (a partial retry, another source): another key.

    The seller replays the cached answer for a known key and refuses a known key with another body
    (``IDEMPOTENCY_CONFLICT``), so the key has to follow the body exactly. Fits ``^[A-Za-z0-9_.:-]{16,255}$``.
    """
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return f"evlog.{batch_id}.{digest}"


class AdcpExporter(Exporter):
    """Sends batches to ``agent_url`` with the MCP ``tools/call`` of ``log_event``."""

    name = "adcp"
    Options = AdcpOptions
    options: AdcpOptions
    default_max_batch_size = MAX_EVENTS

    def __init__(self, options: AdcpOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        opts = self.options
        headers: dict[str, str] = {}
        if opts.token:
            headers[opts.auth_header] = f"{opts.auth_scheme} {opts.token}" if opts.auth_scheme else opts.token
        self._http = HttpClient(timeout=opts.timeout, secrets=[opts.token], pool_size=2)
        self._mcp = McpClient(self._http, opts.agent_url, headers=headers, protocol_version=opts.protocol_version)
        self._defaults = MappingDefaults(opts.action_source, opts.event_source_url, opts.surface)
        self._lock = threading.Lock()
        self._stats: dict[str, Any] = {
            "requests": 0,
            "replayed": 0,
            "events_processed": 0,
            "partial_failures": 0,
            "invalid_events": 0,
            "match_quality": None,
            "warnings": [],
        }

    # --- building the request --------------------------------------------------------------------------

    def _arguments(self, batch_id: str, wire_events: list[dict[str, Any]]) -> dict[str, Any]:
        opts = self.options
        arguments: dict[str, Any] = {
            "adcp_version": opts.adcp_version,
            "event_source_id": opts.event_source_id,
            "events": wire_events,
        }
        if opts.test_event_code:
            arguments["test_event_code"] = opts.test_event_code
        return {"idempotency_key": idempotency_key(batch_id, arguments), **arguments}

    # --- export ------------------------------------------------------------------------------------------

    def export(self, batch: Batch) -> ExportResult:
        limit = min(self.max_batch_size, MAX_EVENTS)
        events, overflow = batch.events[:limit], batch.events[limit:]
        outcomes = ExportOutcomes(batch, label="invalid for AdCP log_event")
        mapped = outcomes.prepare(events, lambda event: map_event(event, self._defaults))
        with self._lock:
            self._stats["invalid_events"] += len(events) - len(mapped)
        outcomes.retry(overflow, f"AdCP log_event takes at most {limit} events per request: sent in another")
        if not mapped:
            return outcomes.result()
        sent = [event for event, _ in mapped]
        arguments = self._arguments(batch.batch_id, [wire for _, wire in mapped])
        reply = self._mcp.call_tool("log_event", arguments, timeout=batch.time_left(self.options.timeout))
        verdict = self._result(reply, sent)
        outcomes.merge(sent, verdict)
        return outcomes.result(details=verdict.details)

    def _error_result(self, errors: Sequence[_AdcpError], where: str) -> ExportResult:
        message = f"AdCP log_event {where}: " + "; ".join(e.describe() for e in errors)
        first = errors[0]
        if first.transient:
            return ExportResult.retry(message, after=first.retry_after)
        return ExportResult.failure(message)

    def _result(self, reply: McpReply, sent: Sequence[Event]) -> ExportResult:
        outcome = reply.outcome
        if not outcome.ok:
            result = outcome_to_result(outcome, what="AdCP log_event")
            if outcome.status in (401, 403):
                return ExportResult.failure(f"{result.message} (check the adcp token and auth_header)")
            return result
        if reply.error is not None:
            return self._rpc_error(reply.error)
        if reply.result is None:
            return ExportResult.retry(f"AdCP log_event: {reply.problem or 'unreadable reply'}")
        return self._tool_result(reply.result, sent)

    def _rpc_error(self, error: Mapping[str, Any]) -> ExportResult:
        data = error.get("data")
        if isinstance(data, Mapping) and isinstance(data.get("adcp_error"), Mapping):
            return self._error_result([_adcp_error(data["adcp_error"])], "refused")
        code = error.get("code")
        known = _RPC_CODES.get(code) if isinstance(code, int) else None
        adcp = _adcp_error({"code": known or f"JSON-RPC {code}", "message": error.get("message")})
        return self._error_result([adcp], "refused")

    def _tool_result(self, result: Mapping[str, Any], sent: Sequence[Event]) -> ExportResult:
        structured = result.get("structuredContent")
        payload: Mapping[str, Any] | None = None
        if isinstance(structured, Mapping) and set(structured) != {"adcp_error"}:
            payload = structured
        if payload is None:
            payload = _text_json(result) or (structured if isinstance(structured, Mapping) else None)
        if result.get("isError"):
            errors = _errors_of(payload)
            if errors:
                return self._error_result(errors, "failed")
            return ExportResult.failure(f"AdCP log_event failed: {_first_text(result) or 'isError'}")
        if payload is None:
            return ExportResult.failure("AdCP log_event: the tool result holds no JSON object")
        errors = _errors_of(payload)
        if errors:  # the LogEventError branch, which sellers send with isError false
            return self._error_result(errors, "failed")
        status = payload.get("status") or "completed"
        if status in _FAILED_STATUSES:
            detail = payload.get("message") or status
            return ExportResult.failure(f"AdCP log_event {status}: {detail}")
        return self._success(payload, sent)

    def _success(self, payload: Mapping[str, Any], sent: Sequence[Event]) -> ExportResult:
        ids = {e.event_id for e in sent}
        rejected: dict[str, str] = {}
        retry: list[Event] = []
        failures = payload.get("partial_failures")
        for raw in failures if isinstance(failures, list) else []:
            if not isinstance(raw, Mapping) or raw.get("event_id") not in ids:
                continue
            error = _adcp_error(raw)
            if error.transient:
                retry.extend(e for e in sent if e.event_id == raw["event_id"])
            else:
                rejected[str(raw["event_id"])] = f"refused by the AdCP seller: {error.describe()}"
        details = self._record(payload, len(rejected))
        if not rejected and not retry:
            return ExportResult.success(details=details)
        return ExportResult.partial(
            rejected, retry=retry, message=f"{len(rejected) + len(retry)} event(s) refused", details=details
        )

    def _record(self, payload: Mapping[str, Any], failures: int) -> dict[str, Any]:
        """Keep what the seller reports about matching: it is how one learns the identifiers are any good."""
        details: dict[str, Any] = {}
        quality = payload.get("match_quality")
        if isinstance(quality, (int, float)) and not isinstance(quality, bool):
            details["match_quality"] = quality
        warnings = payload.get("warnings")
        warnings = [str(w) for w in warnings][:10] if isinstance(warnings, list) else []
        with self._lock:
            stats = self._stats
            stats["requests"] += 1
            stats["partial_failures"] += failures
            processed = payload.get("events_processed")
            if isinstance(processed, int) and not payload.get("replayed"):
                stats["events_processed"] += processed
            if payload.get("replayed"):
                stats["replayed"] += 1
            if "match_quality" in details:
                stats["match_quality"] = details["match_quality"]
            changed = warnings and warnings != stats["warnings"]
            if warnings:
                stats["warnings"] = warnings
        if changed:
            _log.info("AdCP seller warnings: %s", "; ".join(warnings))
        if warnings:
            details["warnings"] = warnings
        return details

    # --- lifecycle ---------------------------------------------------------------------------------------

    def stats(self) -> Mapping[str, Any]:
        with self._lock:
            figures = dict(self._stats)
            figures["warnings"] = list(figures["warnings"])
        figures["sessions_started"] = self._mcp.sessions_started
        return figures

    def shutdown(self, timeout: float) -> None:
        try:
            self._mcp.close(min(timeout, self.options.timeout))
        finally:
            self._http.close()

    def reset_after_fork(self) -> None:
        self._http.reset_after_fork()
        self._mcp.reset_after_fork()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<AdcpExporter {self.options.agent_url!r} source={self.options.event_source_id!r}>"
