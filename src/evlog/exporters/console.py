"""``console``: one readable line per event on stderr. The default when nothing is configured."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import attrs

from evlog._errors import EventRejected
from evlog._event import Event
from evlog._serialize import rfc3339
from evlog.exporters._base import Batch, Exporter, ExportResult
from evlog.exporters._result import ExportOutcomes

__all__ = ["ConsoleExporter", "ConsoleOptions"]


@attrs.frozen
class ConsoleOptions:
    #: Write to standard output instead of standard error.
    stdout: bool = False
    #: Include the event id, user and session on each line.
    verbose: bool = False


class ConsoleExporter(Exporter):
    """Prints ``<time> <LEVEL> <name> [category] message labels=... {data}``."""

    name = "console"
    backpressure = True
    Options = ConsoleOptions
    options: ConsoleOptions

    def __init__(self, options: ConsoleOptions | None = None, /, **kwargs: object) -> None:
        super().__init__(options, **kwargs)

    def _stream(self) -> TextIO:
        # Looked up at each write so redirections (and pytest's capture) are honoured.
        return sys.stdout if self.options.stdout else sys.stderr

    def format(self, event: object) -> str:
        from evlog._event import Event

        assert isinstance(event, Event)
        parts = [rfc3339(event.timestamp), f"{event.level.value.upper():<8}", event.name]
        if event.category:
            parts.append(f"[{event.category}]")
        if event.message:
            parts.append(event.message)
        if event.labels:
            parts.append("labels=" + ",".join(event.labels))
        if event.value is not None:
            parts.append(f"value={event.value!r}")
        if event.data:
            parts.append(json.dumps(event.data, ensure_ascii=False, sort_keys=True))
        if event.exception is not None:
            parts.append(f"exception={event.exception.exception_type}: {event.exception.exception_msg}")
        if self.options.verbose:
            parts.append(f"id={event.event_id}")
            if event.user is not None and event.user.id:
                parts.append(f"user={event.user.id}")
            if event.session_id:
                parts.append(f"session={event.session_id}")
        return " ".join(parts)

    def _line(self, event: Event) -> str:
        try:
            return self.format(event) + "\n"
        except (TypeError, ValueError) as exc:  # a processor put something JSON cannot hold into the event
            raise EventRejected(f"event cannot be formatted ({exc})") from exc

    def export(self, batch: Batch) -> ExportResult:
        outcomes = ExportOutcomes(batch, label="console")
        lines = outcomes.prepare(batch.events, self._line)
        stream = self._stream()
        stream.write("".join(line for _event, line in lines))
        stream.flush()
        outcomes.accept(event for event, _ in lines)
        return outcomes.result()
