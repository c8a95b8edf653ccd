"""A stand-in for Coveo's UA Write API v15 custom-event endpoint, for ``RecordingServer``.

It follows the documented contract: ``POST /rest/ua/v15/analytics/custom`` with ``Authorization: Bearer``,
one ``CustomEventModelV15`` JSON object per request; 200 ``{"visitId", "visitorId"}`` on success, errors as
``{"message", "type"}`` (401 without a valid token, 400 ``InvalidObject`` for a bad field, 400
``InvalidJson`` for a body that is not a JSON object). Like the real service it sets a visitor cookie when
the event has no client id.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from support.loopback import Reply, Request

PATH = "/rest/ua/v15/analytics/custom"
TOKEN = "xx-fake-coveo-token-0123456789"


class CoveoFake:
    """``RecordingServer(CoveoFake())``; ``bodies`` lists the accepted events in arrival order."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or request.path.split("?")[0] != PATH:
            return Reply(404, {"message": f"no route {request.method} {request.path}", "type": "NotFound"})
        if request.header("Authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "Invalid token", "type": "InvalidTokenException"})
        try:
            body = json.loads(request.body)
        except ValueError:
            return Reply(400, {"message": "Malformed JSON", "type": "InvalidJson"})
        if not isinstance(body, dict):
            return Reply(400, {"message": "Expected an object", "type": "InvalidJson"})
        problem = self._problem(body)
        if problem:
            return Reply(400, {"message": problem, "type": "InvalidObject"})
        self.bodies.append(body)
        headers = {}
        visitor = body.get("clientId")
        if visitor is None:
            visitor = str(uuid.uuid4())
            headers["Set-Cookie"] = f"coveo_visitorId={visitor}; Path=/"
        return Reply(200, {"visitId": str(uuid.uuid4()), "visitorId": visitor}, headers=headers)

    @staticmethod
    def _problem(body: dict[str, Any]) -> str | None:
        for name in ("eventType", "eventValue", "language"):
            if not isinstance(body.get(name), str) or not body[name]:
                return f"{name} is required"
        outcome = body.get("outcome")
        if outcome is not None and (type(outcome) is not int or not -5 <= outcome <= 5):
            return "outcome must be an integer between -5 and 5"
        if "clientId" in body:
            try:
                uuid.UUID(body["clientId"])
            except (ValueError, TypeError, AttributeError):
                return "clientId must be a valid UUID"
        return None
