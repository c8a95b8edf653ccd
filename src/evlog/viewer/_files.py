"""Events from files, for ``evlog ui --file``: a jsonl exporter's output, or a durable spool (``*.evspool``).

The spool is opened read-only (sqlite ``mode=ro``) and nothing in it changes: looking at what a process left
behind must not deliver, adopt or remove it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evlog._serialize import event_to_dict
from evlog._spool import decode_event

__all__ = ["read_events"]

SPOOL_SUFFIX = ".evspool"


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line, or not an event file: skip what is not an event
            if isinstance(event, dict) and "name" in event:
                yield event


def _decoded(raw: Any) -> dict[str, Any] | None:
    try:
        return event_to_dict(decode_event(json.dumps(raw).encode("utf-8")))
    except Exception:  # one unreadable event must not hide the others
        return None


def _spool(path: Path) -> Iterator[dict[str, Any]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for (body,) in conn.execute("SELECT body FROM batches ORDER BY seq"):
            try:
                raws = json.loads(body)
            except ValueError:
                continue
            for raw in raws if isinstance(raws, list) else ():
                event = _decoded(raw)
                if event is not None:
                    yield event
    finally:
        conn.close()


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The events of ``path`` in their full form (as ``event_to_dict`` gives them); ``OSError`` or
    ``sqlite3.Error`` when it cannot be read."""
    path = Path(path)
    if path.suffix == SPOOL_SUFFIX:
        return list(_spool(path))
    return list(_jsonl(path))
