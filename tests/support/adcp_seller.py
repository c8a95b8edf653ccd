"""An AdCP seller built with the official ``adcp`` SDK's server framework, for the AdCP exporter's tests.

Run as a subprocess (``python adcp_seller.py PORT TOKEN``) because ``adcp.server.serve`` owns its event loop
and offers no way to stop it from another thread; the test fixture terminates the process instead.

It implements ``log_event`` with the SDK's own MCP transport, bearer auth, request-schema validation and
idempotency store, so the exporter is tested against the real wire contract. The event source id selects
a scenario:

- ``website_pixel``: events are accepted; an event dated before 2001 is a partial failure
  (``VALIDATION_ERROR``, "event_time outside attribution window"), as a real seller's attribution window does.
- ``rate_limited``: the first call for each idempotency key answers ``RATE_LIMITED`` with ``retry_after: 1``
  (before the idempotency wrapper, like a gateway, so the retry is not a cached replay of the error).
- anything else: ``REFERENCE_NOT_FOUND`` for ``event_source_id``.

``GET /_test/state`` (unauthenticated) returns what the seller processed: the calls that reached the handler
(replays do not), the events counted, and every raw ``log_event`` arguments object it was sent.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from adcp.server import ADCPHandler, IdempotencyStore, MemoryBackend, capabilities_response, serve
from adcp.server.auth import BearerTokenAuth, Principal, auth_context_factory, validator_from_token_map
from adcp.server.helpers import adcp_error
from adcp.server.responses import log_event_response
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_idempotency = IdempotencyStore(backend=MemoryBackend(), ttl_seconds=86400)
_lock = threading.Lock()
_state: dict[str, Any] = {"handled_calls": 0, "events_counted": 0, "requests": [], "rate_limited_keys": []}


def _as_dict(params: Any) -> dict[str, Any]:
    if isinstance(params, dict):
        return params
    return dict(params.model_dump(mode="json", exclude_none=True))


class Seller(ADCPHandler):  # type: ignore[type-arg]
    advertised_tools = frozenset({"log_event", "get_adcp_capabilities"})

    async def get_adcp_capabilities(self, params: Any, context: Any = None) -> Any:
        return capabilities_response(["media_buy"], idempotency=_idempotency.capability())

    async def log_event(self, params: Any, context: Any = None) -> Any:
        body = _as_dict(params)
        with _lock:
            _state["requests"].append(body)
        key = body.get("idempotency_key")
        if body.get("event_source_id") == "rate_limited":
            with _lock:
                first = key not in _state["rate_limited_keys"]
                if first:
                    _state["rate_limited_keys"].append(key)
            if first:
                return adcp_error("RATE_LIMITED", "slow down", recovery="transient", retry_after=1)
        return await self._log_event(params, context)

    @_idempotency.wrap
    async def _log_event(self, params: Any, context: Any = None) -> Any:
        body = _as_dict(params)
        if body.get("event_source_id") not in ("website_pixel", "rate_limited"):
            return adcp_error("REFERENCE_NOT_FOUND", "event source not configured", field="event_source_id")
        events = body.get("events", [])
        failures = [
            {"event_id": e["event_id"], "code": "VALIDATION_ERROR", "message": "event_time outside attribution window"}
            for e in events
            if str(e.get("event_time", "")) < "2001"
        ]
        with _lock:
            _state["handled_calls"] += 1
            _state["events_counted"] += len(events) - len(failures)
        response = log_event_response(len(events), len(events) - len(failures))
        response["match_quality"] = 0.5
        if failures:
            response["partial_failures"] = failures
            response["warnings"] = ["some events were outside the attribution window"]
        return response


async def _test_state(_request: Request) -> JSONResponse:
    with _lock:
        return JSONResponse(_state)


def main(port: int, token: str) -> None:
    principal = Principal(caller_identity="evlog-tests", tenant_id="tenant-1")
    serve(
        Seller(),
        name="evlog-test-seller",
        host="127.0.0.1",
        port=port,
        context_factory=auth_context_factory,
        auth=BearerTokenAuth(validate_token=validator_from_token_map({token: principal})),
        unauthenticated_routes=[Route("/_test/state", _test_state)],
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
