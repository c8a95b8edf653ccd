"""``jsonl``: append one JSON object per event to a file (JSON Lines), for local use, tests and shipping by
a log collector."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

import attrs

from evlog._errors import EventRejected
from evlog._event import Event
from evlog._serialize import event_to_dict
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes


def _line(event: Event) -> str:
    try:
        return json.dumps(event_to_dict(event), ensure_ascii=False, separators=(",", ":")) + "\n"
    except (TypeError, ValueError) as exc:  # a processor put something JSON cannot hold into the event
        raise EventRejected(f"event is not JSON-serializable ({exc})") from exc


__all__ = ["JsonlExporter", "JsonlOptions"]


@attrs.frozen
class JsonlOptions:
    #: File to append to; parent directories are created.
    path: str = "evlog-events.jsonl"
    #: fsync after each batch: slower, but a batch survives a power loss once ``export`` returns.
    fsync: bool = False


class JsonlExporter(Exporter):
    """Each line is the event's full form: name, timestamp (RFC 3339), event_id, level, and every set field."""

    name = "jsonl"
    backpressure = True
    Options = JsonlOptions
    options: JsonlOptions
    default_max_batch_size = 1000

    def __init__(self, options: JsonlOptions | None = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return Path(self.options.path)

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self._file

    def export(self, batch: Batch) -> ExportResult:
        outcomes = ExportOutcomes(batch, label="jsonl")
        lines = outcomes.prepare(batch.events, _line)
        try:
            with self._lock:
                fh = self._open()
                fh.write("".join(line for _event, line in lines))
                fh.flush()
                if self.options.fsync:
                    os.fsync(fh.fileno())
        except OSError as exc:
            outcomes.retry((event for event, _ in lines), f"cannot write {self.options.path}: {exc}")
        else:
            outcomes.accept(event for event, _ in lines)
        return outcomes.result()

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._file = None
