"""``jsonl``: append one JSON object per event to a file (JSON Lines), for local use, tests and shipping by
a log collector."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO, Any

import attrs

from evlog._serialize import event_wire
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes

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
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return Path(self.options.path)

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        return self._file

    def export(self, batch: Batch) -> ExportResult:
        # Each event is encoded on its own (one that cannot be is rejected alone, with its field path), and the
        # batch is written with one call. UTF-8, non-ASCII characters as they are (the encoding step's form).
        outcomes = ExportOutcomes(batch, label="jsonl")
        app = {
            k: v
            for k, v in (
                ("release", self.app.release),
                ("environment", self.app.environment),
                ("service", self.app.service),
            )
            if v is not None
        }
        wire = (lambda event: {**event_wire(event), **app}) if app else event_wire
        lines = outcomes.encode(batch.events, wire)
        try:
            with self._lock:
                fh = self._open()
                fh.write(b"\n".join(line for _event, line in lines) + b"\n" if lines else b"")
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
