"""Accounting for lost events: counted by reason, handed to ``on_drop``, logged without flooding.

Every place that gives up on an event goes through ``Reporter.drop``. Logging goes to the ``evlog`` logger
under the guard (``_guard.guarded``), so that a logging handler feeding evlog cannot turn evlog's own warnings
into events, and at most one line per exporter and reason per ``interval`` (with the count of what was held
back), so a dead backend cannot flood the app's logs.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from evlog._event import Event
from evlog._guard import guarded, internal_logger

__all__ = ["NOT_A_LOSS", "Drop", "DropReason", "ExporterStats", "Reporter", "Stats"]


class DropReason(str, enum.Enum):
    """Why events were not delivered."""

    #: The buffer was full (the backend is slower than the app, or down).
    QUEUE_FULL = "queue_full"
    #: A ``before_send`` processor returned None (on purpose; not logged as a warning).
    BEFORE_SEND = "before_send"
    #: A ``before_send`` processor raised or returned something that is not an Event.
    PROCESSOR_ERROR = "processor_error"
    #: The event could not be built from ``log_event``'s arguments on the background thread (the conversion
    #: replaces odd values, so this is a bug to report, not bad input).
    BUILD_ERROR = "build_error"
    #: The backend or the exporter's pre-send checks refused these events for good.
    REJECTED = "rejected"
    #: The backend refused the whole batch for good (e.g. bad credentials).
    FAILED = "failed"
    #: Transient failures went on past ``retry_deadline``.
    RETRIES_EXHAUSTED = "retries_exhausted"
    #: The exporter raised instead of returning a result.
    EXPORT_ERROR = "export_error"
    #: Still queued, waiting for a retry, or in flight when the shutdown timeout ran out.
    SHUTDOWN = "shutdown"
    #: ``log_event`` was called after ``shutdown()``.
    AFTER_SHUTDOWN = "after_shutdown"
    #: The durable spool was over ``spool_max_bytes``: its oldest events were dropped.
    SPOOL_FULL = "spool_full"
    #: Events waited in the durable spool longer than ``spool_max_age``.
    SPOOL_EXPIRED = "spool_expired"
    #: Events kept in the durable spool could not be read back (a corrupt row, a failing disk).
    SPOOL_UNREADABLE = "spool_unreadable"
    #: The request was sent but no answer came before the shutdown deadline: the backend may have stored the
    #: events or not. Counted apart (``ExporterStats.unknown``), never as sent and never among the drops.
    OUTCOME_UNKNOWN = "outcome_unknown"

    def __str__(self) -> str:
        return self.value


_QUIET = {DropReason.BEFORE_SEND}
#: Reasons that do not make an event "not delivered" for ``flush()`` / ``shutdown()``'s answer: dropped on purpose,
#: or logged after shutdown began (never queued before the call).
NOT_A_LOSS = frozenset({DropReason.BEFORE_SEND, DropReason.AFTER_SHUTDOWN})


@attrs.frozen
class Drop:
    """What ``on_drop`` receives: ``count`` events lost for ``reason``.

    ``exporter`` is None when the loss happened before fan-out (every exporter lost them). ``events`` holds the
    events when they exist as objects (it is empty for ``queue_full`` at intake and ``after_shutdown``).
    ``detail`` is a human-readable explanation (the server's message, the rule that was broken...).
    """

    reason: DropReason
    count: int
    exporter: str | None = None
    events: Sequence[Event] = ()
    detail: str = ""


@attrs.frozen
class ExporterStats:
    """A snapshot of one exporter's figures, as ``evlog.stats()`` returns them."""

    #: Events waiting now: in its buffer or in flight, and (not yet routed) in the shared intake queue.
    queued: int = 0
    #: Events the backend accepted.
    sent: int = 0
    #: Events sent again after a transient failure (one count per event per retry).
    retried: int = 0
    #: Events lost, by reason (``DropReason`` values), including losses before fan-out.
    dropped: Mapping[str, int] = attrs.field(factory=dict)
    #: Events whose request was cut off by the shutdown deadline: maybe stored by the backend, maybe not.
    unknown: int = 0
    #: Events logged for this exporter so far: ``queued + sent + dropped_total + unknown`` always adds up to it.
    logged: int = 0
    #: Exporter-specific figures (e.g. the latest match quality a backend reported).
    details: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@attrs.frozen
class Stats:
    """What ``evlog.stats()`` returns. Index it by exporter name: ``evlog.stats()["statsig"].sent``."""

    #: Per exporter: queued, sent, retried, dropped by reason (losses before fan-out included), details.
    exporters: Mapping[str, ExporterStats]
    #: Events waiting in the intake queue (not yet handed to the exporters' buffers).
    intake_queued: int = 0
    #: Events left out by ``sample_rate``.
    sampled_out: int = 0
    #: Events lost before fan-out (every exporter lost them), by reason.
    dropped: Mapping[str, int] = attrs.field(factory=dict)
    #: The durable spool, when there is one: ``events`` and ``bytes`` it holds, ``not_persisted`` (events a
    #: failing disk kept it from writing), ``dropped_by_limits``, ``unreadable``.
    spool: Mapping[str, int] = attrs.field(factory=dict)

    def __getitem__(self, exporter: str) -> ExporterStats:
        return self.exporters[exporter]


class Reporter:
    """Counts, callbacks and rate-limited log lines for one client."""

    def __init__(self, on_drop: Callable[[Drop], None] | None, *, interval: float = 60.0) -> None:
        self._on_drop = on_drop
        self._interval = interval
        self._lock = threading.Lock()
        self._counts: dict[tuple[str | None, DropReason], int] = {}
        self._lost = 0
        self._last_logged: dict[tuple[str | None, str], float] = {}
        self._held: dict[tuple[str | None, str], int] = {}

    def lost(self) -> int:
        """Events counted as not delivered so far, everywhere (what ``shutdown()`` compares before and after)."""
        with self._lock:
            return self._lost

    def counts(self, exporter: str | None) -> dict[str, int]:
        with self._lock:
            return {reason.value: n for (name, reason), n in self._counts.items() if name == exporter and n}

    def drop(
        self,
        reason: DropReason,
        count: int,
        *,
        exporter: str | None = None,
        events: Sequence[Event] = (),
        detail: str = "",
        quiet: bool = False,
    ) -> None:
        """Count a loss, tell ``on_drop``, and log it: as a rate-limited warning, or at debug level when
        ``quiet`` (a loss that is expected, such as an optional destination that is not running)."""
        if count <= 0:
            return
        with self._lock:
            key = (exporter, reason)
            self._counts[key] = self._counts.get(key, 0) + count
            if reason not in NOT_A_LOSS:
                self._lost += count
        if self._on_drop is not None:
            self._call_on_drop(Drop(reason, count, exporter, tuple(events), detail))
        if reason not in _QUIET:
            who = f"exporter {exporter!r}" if exporter else "every exporter"
            if reason is DropReason.OUTCOME_UNKNOWN:
                text = f"outcome unknown for {count} event(s) of {who}"
            else:
                text = f"dropped {count} event(s) for {who}: {reason.value}"
            text += f" ({detail})" if detail else ""
            if quiet:
                with guarded(), contextlib.suppress(Exception):
                    internal_logger.debug("evlog: %s", text)
            else:
                self.warn(f"drop:{reason.value}", text, exporter=exporter)

    def _call_on_drop(self, drop: Drop) -> None:
        assert self._on_drop is not None
        with guarded():
            try:
                self._on_drop(drop)
            except Exception:
                self.warn("on_drop", "the on_drop callback raised; its error is ignored", exc_info=True)

    def warn(self, topic: str, message: str, *, exporter: str | None = None, exc_info: bool = False) -> None:
        """Log ``message`` as a warning, at most once per ``interval`` for the same exporter and topic."""
        key = (exporter, topic)
        now = time.monotonic()
        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last_logged[key] = now
            held = self._held.pop(key, 0)
        if held:
            message += f" [{held} similar message(s) held back in the last {self._interval:.0f}s]"
        with guarded(), contextlib.suppress(Exception):  # a broken logging setup must not reach the app
            internal_logger.warning("evlog: %s", message, exc_info=exc_info)

    def summarise(self) -> None:
        """Log what the rate limit held back (called at shutdown, so nothing is silently swallowed)."""
        with self._lock:
            held = {k: n for k, n in self._held.items() if n}
            self._held.clear()
        for (exporter, topic), n in held.items():
            who = f" (exporter {exporter!r})" if exporter else ""
            with guarded():
                internal_logger.warning("evlog: %d more '%s' message(s)%s were held back", n, topic, who)
