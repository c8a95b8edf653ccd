"""The exporter contract: what a backend integration implements, and what it reports back.

Exporters are deliberately plain. They turn a batch of events into their backend's wire format and send it; the
pipeline owns threads, buffers, retries and accounting. That keeps every exporter small and makes the
guarantees (bounded memory, bounded shutdown, nothing lost without a count) hold for third-party ones too.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import attrs

from evlog._event import Event
from evlog._options import build_exporter_options

__all__ = ["AppInfo", "Batch", "ExportResult", "ExportStatus", "Exporter", "NoOptions"]


@attrs.frozen(slots=True)
class NoOptions:
    """Options of an exporter that takes none."""


@attrs.frozen(slots=True)
class AppInfo:
    """The app every event comes from (``release``, ``environment``, ``service`` in the configuration).

    Given to each exporter as ``exporter.app`` before its first export; an exporter maps each field to its
    backend's own place for it, where there is one.
    """

    release: str | None = None
    environment: str | None = None
    service: str | None = None


_building_for: ContextVar[AppInfo] = ContextVar("evlog_building_for", default=AppInfo())  # noqa: B039 - frozen


@contextmanager
def building_for(app: AppInfo) -> Iterator[None]:
    """Exporters built inside the block start with ``app`` (``configure()`` builds them this way), so an
    exporter can take a required value from the app's fields (the session server's product and version)."""
    token = _building_for.set(app)
    try:
        yield
    finally:
        _building_for.reset(token)


@attrs.frozen(slots=True)
class Batch:
    """Events handed to ``Exporter.export`` in one call.

    ``batch_id`` is fresh for each new batch and unchanged when the same batch is retried, so exporters can use
    it as an idempotency key. ``attempt`` is 0 on the first try. ``deadline`` is a ``time.monotonic()`` value
    the exporter must finish by (request timeouts should not run past it); it shrinks at shutdown.
    """

    events: tuple[Event, ...]
    batch_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    attempt: int = 0
    deadline: float | None = None
    #: For events logged by an earlier process and delivered from its durable spool: event id -> what that
    #: process's exporter saved with ``spool_state()`` (e.g. the session they belong to). Empty otherwise.
    origins: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self.events)

    def time_left(self, default: float) -> float:
        """Seconds left before the deadline, at most ``default`` and never negative."""
        if self.deadline is None:
            return default
        return max(0.0, min(default, self.deadline - time.monotonic()))

    def retry(self, events: Iterable[Event] | None = None, *, deadline: float | None = None) -> Batch:
        """The same batch for its next attempt (optionally only some of its events)."""
        kept = self.events if events is None else tuple(events)
        return attrs.evolve(self, events=kept, attempt=self.attempt + 1, deadline=deadline)


class ExportStatus(enum.Enum):
    SUCCESS = "success"
    PARTIAL = "partial"
    RETRY = "retry"
    FAILURE = "failure"


@attrs.frozen(slots=True)
class ExportResult:
    """What happened to a batch. Exporters build it with ``ExportOutcomes`` (``evlog.exporters``), which applies
    the rules every exporter shares; the classmethods below are what it uses.

    - ``success()``: every event was accepted.
    - ``retry(message, after=...)``: nothing (or only ``events``) got through for a transient reason; the
      pipeline retries with backoff, waiting at least ``after`` seconds when the server asked for it.
    - ``partial(rejected, retry=...)``: some events were refused for good (``rejected`` maps event id to the
      reason), some may be retried, the rest were accepted.
    - ``failure(message)``: the whole batch was refused for good (bad credentials, malformed request...).

    ``details`` is free-form information the exporter wants kept in stats (e.g. match quality).
    """

    status: ExportStatus
    message: str = ""
    retry_after: float | None = None
    rejected: Mapping[str, str] = attrs.field(factory=dict)
    retry_ids: frozenset[str] | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def success(cls, *, details: Mapping[str, Any] | None = None) -> ExportResult:
        return cls(ExportStatus.SUCCESS, details=details or {})

    @classmethod
    def retry(
        cls,
        message: str,
        *,
        after: float | None = None,
        events: Iterable[Event] | None = None,
    ) -> ExportResult:
        """Transient failure. ``events`` limits the retry to those events (the others were accepted)."""
        ids = None if events is None else frozenset(e.event_id for e in events)
        return cls(ExportStatus.RETRY, message=message, retry_after=after, retry_ids=ids)

    @classmethod
    def failure(cls, message: str) -> ExportResult:
        return cls(ExportStatus.FAILURE, message=message)

    @classmethod
    def partial(
        cls,
        rejected: Mapping[str, str],
        *,
        retry: Iterable[Event] = (),
        retry_after: float | None = None,
        message: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> ExportResult:
        """Per-event outcome: ``rejected`` (event id -> reason) are dropped, ``retry`` are tried again."""
        ids = frozenset(e.event_id for e in retry)
        return cls(
            ExportStatus.PARTIAL,
            message=message,
            retry_after=retry_after,
            rejected=dict(rejected),
            retry_ids=ids or None,
            details=details or {},
        )

    @property
    def ok(self) -> bool:
        return self.status is ExportStatus.SUCCESS


class Exporter:
    """Base class of every exporter.

    Subclasses set ``name`` (the configuration name) and ``Options`` (an attrs class: every field is an option,
    reachable from ``configure()``, ``EVLOG_<NAME>_<OPTION>`` and ``[exporters.<name>]``), and implement
    ``export``. They are built with keyword arguments, ``MyExporter(api_key=...)``, which are checked against
    ``Options`` (unknown or bad ones raise ``ConfigError``); ``self.options`` holds the result.

    ``export`` is called from one background thread at a time; it may block on I/O (bounded by
    ``batch.deadline``) and may raise: the pipeline catches and counts. ``shutdown`` releases resources within
    ``timeout``. ``reset_after_fork`` runs in a forked child before it exports anything (drop sockets,
    sessions and locks inherited from the parent). ``note_crash`` is called when an uncaught exception is
    about to end the process, before shutdown.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[Any]] = NoOptions
    #: Set when the exporter needs the active OpenTelemetry span captured in the app thread at log time.
    captures_trace_context: ClassVar[bool] = False
    #: Set by exporters whose cost is the process's own work (a file, memory, the console) rather than a remote
    #: backend's: when their buffer is full the router waits for room instead of dropping, so an app that logs
    #: faster than they write is slowed down (briefly, see ``intake_wait``) instead of losing events.
    backpressure: ClassVar[bool] = False
    #: Set by exporters whose destination is often, and normally, absent (the local viewer when ``evlog ui`` is
    #: not open): the batches it refuses (``failed``) are counted as ever, but logged at debug level instead of
    #: as a warning, since nothing is wrong.
    optional: ClassVar[bool] = False
    #: Seconds of the shutdown budget kept for ``shutdown()`` itself (ending a session, say): deliveries at
    #: shutdown stop that much before its deadline (at most half of what is left).
    shutdown_reserve: ClassVar[float] = 0.0
    #: Upper bound on events per ``export`` call, when the options do not set ``max_batch_size``.
    default_max_batch_size: ClassVar[int] = 512

    options: Any
    #: The app's release, environment and service, from the configuration (set before the first export).
    app: AppInfo = AppInfo()

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        self.app = _building_for.get()
        if options is None:
            options = build_exporter_options(type(self), kwargs, source="constructor arguments")
        elif kwargs:
            raise TypeError("pass either an Options instance or keyword arguments, not both")
        self.options = options

    @property
    def max_batch_size(self) -> int:
        size = getattr(self.options, "max_batch_size", None)
        return int(size) if size else self.default_max_batch_size

    def export(self, batch: Batch) -> ExportResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def force_flush(self, timeout: float) -> bool:
        """Push out anything the exporter buffers itself. True when done within ``timeout``."""
        return True

    def shutdown(self, timeout: float) -> None:
        """Release resources. Called once, from the pipeline's thread, after the last export."""

    def reset_after_fork(self) -> None:
        """Called in a forked child: forget connections and locks inherited from the parent."""

    def note_crash(self, reason: str) -> None:
        """An uncaught exception is ending the process; ``reason`` describes it."""

    def stats(self) -> Mapping[str, Any]:
        """Exporter-specific figures merged into ``evlog.stats()`` under ``details``."""
        return {}

    def spool_state(self) -> Mapping[str, str]:
        """What a later process needs to deliver this process's spooled events as this one would have.

        Kept in the durable spool with the events; a process that adopts them hands it back per event in
        ``Batch.origins``. The session server exporter saves its session id, so events left over at exit reach
        the session they were logged in. Called on the router thread: keep it cheap.
        """
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
