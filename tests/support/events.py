"""The one event factory of the exporter tests: a real ``evlog.Event``, fresh id, UTC time now."""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

from evlog import Event


def make_event(name: str = "purchase", **fields: Any) -> Event:
    """An ``Event`` named ``name``; ``fields`` set any other field (``event_id``, ``data``, ``user``...)."""
    fields.setdefault("timestamp", _dt.datetime.now(_dt.timezone.utc))
    fields.setdefault("event_id", uuid.uuid4().hex)
    return Event(name=name, **fields)
