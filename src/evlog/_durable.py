"""What the durable spool means for the pipelines: each routing pass on disk, overflow kept on disk and read back
in log order, the spools of dead processes adopted and delivered, and events removed once every exporter is done.

The spool file itself (sqlite, locking, limits, the codec) is ``_spool``; this module is the policy around it,
run by the router thread (writing, overflow, refills, adoption, limits) and the workers (``settled``). With it:

- every event the router builds is appended to the spool before any exporter sees it, in one transaction per
  pass, and the router passes at least every ``PERSIST_INTERVAL`` seconds, which bounds what kill -9 can lose;
- an exporter whose buffer is full does not lose events: from the first one that does not fit, its events stay
  on disk only (``Overflow``) and are read back, in log order, when its buffer has room again;
- an event leaves the spool once each exporter delivered it or refused it for good; one left pending at
  shutdown (or by a crash) stays on disk for the next process, which adopts the file and delivers it, with its
  ``event_id``, through its exporters of the same name.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from evlog._accounting import DropReason, Reporter
from evlog._buffer import FlushMarker
from evlog._event import Event
from evlog._guard import guarded
from evlog._pipeline import Pipeline

if TYPE_CHECKING:
    from evlog._spool import Spool

__all__ = ["PERSIST_INTERVAL", "Keeper"]

#: The router writes what it built to disk at least this often: the most kill -9 can lose.
PERSIST_INTERVAL = 0.1
#: How often the spool's size and age limits are checked.
_LIMITS_INTERVAL = 1.0
#: Adopted events start flowing after a random delay up to this long, so a fleet of workers restarting at once
#: does not send a dead generation's backlog in the same second.
_ADOPTION_JITTER = 1.0


@attrs.define
class Overflow:
    """One exporter's events on disk only: every pending one with a seq above ``cursor``."""

    cursor: int | None = None
    spilled: int = 0
    #: Flushes asked for while overflowing, each with the last seq it covers: a marker enters the buffer once
    #: the events up to its seq are read back into it, so the flush waits for them too.
    markers: list[tuple[int, FlushMarker]] = attrs.Factory(list)


@attrs.define(eq=False)
class _Adopted:
    """The spool of a process that is gone, being delivered through this process's exporters."""

    spool: Spool
    cursors: dict[str, int] = attrs.Factory(dict)
    exhausted: set[str] = attrs.Factory(set)
    #: Events read from it and not yet settled: the file closes only once they are.
    outstanding: int = 0
    #: Exporter name -> what that process's exporter saved with ``spool_state()``.
    state: dict[str, dict[str, str]] = attrs.Factory(dict)


class Keeper:
    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int,
        max_age: float,
        reporter: Reporter,
        pipelines: Sequence[Pipeline],
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.reporter = reporter
        self.pipelines = list(pipelines)
        self.names = tuple(p.name for p in self.pipelines)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self.spool: Spool | None = None
        self.overflow = {name: Overflow() for name in self.names}
        self._adopted: list[_Adopted] = []
        self._adopt_after = 0.0
        #: event_id -> the adopted spool it came from (to settle it there), for events held in memory.
        self._origin: dict[str, _Adopted] = {}
        self._lock = threading.Lock()
        self._next_limits = 0.0
        self._saved_state: dict[str, dict[str, str]] = {}

    def _warn(self, message: str) -> None:
        self.reporter.warn("spool", message)

    # --- the router thread ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Open this process's spool and adopt the ones of dead processes (on the router thread: it is I/O)."""
        from evlog._spool import Spool, adopt_orphans  # sqlite3 and the rest load only for apps that spool

        with guarded():
            self.spool = Spool.open(self.directory, max_bytes=self.max_bytes, max_age=self.max_age, warn=self._warn)
            if self.spool is None:
                return
            adopted = adopt_orphans(self.directory, warn=self._warn, max_bytes=self.max_bytes, max_age=self.max_age)
            self._adopted = [_Adopted(spool, state=spool.load_state()) for spool in adopted]
            self._adopt_after = time.monotonic() + random.uniform(0, _ADOPTION_JITTER)

    def persist(self, events: Sequence[Event]) -> None:
        if self.spool is not None and events:
            self.spool.append([(event, self.names) for event in events])

    def offer(self, pipeline: Pipeline, events: Sequence[Event]) -> list[Event]:
        """Hand ``events`` to ``pipeline``, keeping on disk what its buffer has no room for; what is lost."""
        spool = self.spool
        overflow = self.overflow[pipeline.name]
        lost: list[Event] = []
        for event in events:
            if overflow.cursor is None and pipeline.put(event):
                continue
            seq = spool.seq_of(event.event_id) if spool is not None else None
            if seq is None:  # not on disk (no spool, a failing disk, an event it could not encode)
                if overflow.cursor is None:
                    lost.append(event)
                    continue
                pipeline.offered += 1
                lost.append(event)  # an overflowing exporter takes nothing from memory: order would break
                pipeline.router_lost += 1
                continue
            if overflow.cursor is None:
                pipeline.router_lost -= 1  # put() counted it lost: it is kept on disk instead
                overflow.cursor = seq - 1
            else:
                pipeline.offered += 1
            overflow.spilled += 1
        pipeline.spilled = overflow.spilled
        return lost

    def add_marker(self, pipeline: Pipeline, marker: FlushMarker) -> None:
        overflow = self.overflow[pipeline.name]
        if overflow.cursor is None or self.spool is None:
            pipeline.add_marker(marker)
        else:
            overflow.markers.append((self.spool.last_seq, marker))

    def _release_markers(self, pipeline: Pipeline, overflow: Overflow) -> None:
        cursor = overflow.cursor
        ready = [m for seq, m in overflow.markers if cursor is None or seq <= cursor]
        overflow.markers = [(seq, m) for seq, m in overflow.markers if cursor is not None and seq > cursor]
        for marker in ready:
            pipeline.add_marker(marker)

    def refill(self) -> None:
        """Read back, in log order, what overflowing exporters have room for; then adopted events."""
        spool = self.spool
        if spool is None:
            return
        self._save_state(spool)
        for pipeline in self.pipelines:
            room = pipeline.cap - pipeline.buffer.events
            if room < pipeline.cap // 2:
                continue
            overflow = self.overflow[pipeline.name]
            if overflow.cursor is not None:
                self._refill_overflow(spool, pipeline, overflow, room)
            elif self._adopted and time.monotonic() >= self._adopt_after:
                self._refill_adopted(pipeline, min(room, pipeline.max_batch))
            pipeline.spilled = overflow.spilled
        self._close_finished_adoptions()

    def _save_state(self, spool: Spool) -> None:
        for pipeline in self.pipelines:
            with guarded():
                try:
                    state = dict(pipeline.exporter.spool_state())
                except Exception:
                    self.reporter.warn(
                        "spool_state", f"exporter {pipeline.name!r} raised in spool_state()", exc_info=True
                    )
                    continue
                if state and state != self._saved_state.get(pipeline.name):
                    spool.save_state(pipeline.name, state)
                    self._saved_state[pipeline.name] = state

    def origin_of(self, exporter: str, event_id: str) -> dict[str, str] | None:
        """What the process that logged an adopted event saved for ``exporter`` (None: this process's own)."""
        if not self._origin:
            return None
        with self._lock:
            source = self._origin.get(event_id)
        return None if source is None else source.state.get(exporter)

    def _refill_overflow(self, spool: Spool, pipeline: Pipeline, overflow: Overflow, room: int) -> None:
        assert overflow.cursor is not None
        loaded = spool.pending(pipeline.name, limit=room, after=overflow.cursor)
        for seq, event in loaded:
            if not pipeline.put(event, count=False):  # pragma: no cover - room was measured first
                break
            overflow.cursor = seq
            overflow.spilled = max(0, overflow.spilled - 1)
        if len(loaded) < room:  # caught up: new events go straight to the buffer again
            if overflow.spilled:
                # Kept on disk but not given back (an unreadable row, a failing disk): lost, and said so.
                self.reporter.drop(
                    DropReason.SPOOL_UNREADABLE,
                    overflow.spilled,
                    exporter=pipeline.name,
                    detail="the spool could not give these events back (an unreadable row or a failing disk)",
                )
            overflow.cursor = None
            overflow.spilled = 0
        self._release_markers(pipeline, overflow)

    def _refill_adopted(self, pipeline: Pipeline, limit: int) -> None:
        name = pipeline.name
        for source in self._adopted:
            if name in source.exhausted or name not in source.spool.exporters:
                continue
            loaded = source.spool.pending(name, limit=limit, after=source.cursors.get(name, 0))
            with self._lock:
                for seq, event in loaded:
                    if not pipeline.put(event):
                        break
                    source.cursors[name] = seq
                    source.outstanding += 1
                    self._origin[event.event_id] = source
            if len(loaded) < limit:
                source.exhausted.add(name)
            if loaded:
                return  # one source per pass: adopted events trickle in behind the process's own

    def _close_finished_adoptions(self) -> None:
        with self._lock:
            finished = [
                s for s in self._adopted if s.outstanding == 0 and set(self.names) & s.spool.exporters <= s.exhausted
            ]
            self._adopted = [s for s in self._adopted if s not in finished]
        for source in finished:
            source.spool.close()  # deletes the file when nothing is pending, else leaves it to a later adopter

    def enforce_limits(self) -> None:
        """Past ``spool_max_bytes`` / ``spool_max_age`` the oldest events go; an exporter that still holds one
        in memory has not lost it, so only events on disk only (past its overflow cursor) are counted."""
        spool = self.spool
        if spool is None:
            return
        now = time.monotonic()
        # Size is checked every pass (the byte count is in memory), so the file never runs far past the limit;
        # age, which reads the oldest row, once a second.
        if now < self._next_limits and not spool.over_size:
            return
        self._next_limits = now + _LIMITS_INTERVAL
        dropped = spool.trim()
        if not dropped:
            return
        for pipeline in self.pipelines:
            overflow = self.overflow[pipeline.name]
            if overflow.cursor is None:
                continue
            cursor = overflow.cursor
            lost = [expired for seq, names, expired in dropped if pipeline.name in names and seq > cursor]
            if not lost:
                continue
            overflow.spilled = max(0, overflow.spilled - len(lost))
            pipeline.spilled = overflow.spilled
            expired = sum(lost)
            for reason, count, why in (
                (DropReason.SPOOL_EXPIRED, expired, f"older than spool_max_age={self.max_age:g} s"),
                (DropReason.SPOOL_FULL, len(lost) - expired, f"over spool_max_bytes={self.max_bytes} bytes"),
            ):
                if count:
                    self.reporter.drop(reason, count, exporter=pipeline.name, detail=f"{why}; the oldest went first")

    # --- worker threads -------------------------------------------------------------------------------------

    def settled(self, exporter: str, events: Iterable[Event]) -> None:
        """``exporter`` delivered these or refused them for good: they need no more room on disk for it."""
        own: list[str] = []
        by_source: dict[int, tuple[_Adopted, list[str]]] = {}
        with self._lock:
            for event in events:
                source = self._origin.pop(event.event_id, None) if self._origin else None
                if source is None:
                    own.append(event.event_id)
                else:
                    by_source.setdefault(id(source), (source, []))[1].append(event.event_id)
                    source.outstanding -= 1
        spool = self.spool
        if spool is not None and own:
            spool.done(exporter, own)
        for source, ids in by_source.values():
            source.spool.done(exporter, ids)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def spilled_at_shutdown(self) -> list[tuple[Pipeline, int]]:
        """Events still on disk only, per exporter, when the process stops: the next process delivers them."""
        for overflow in self.overflow.values():
            for _seq, marker in overflow.markers:  # flushes that cannot be answered any more
                marker.ok = False
                marker.done.set()
            overflow.markers = []
        return [(p, self.overflow[p.name].spilled) for p in self.pipelines if self.overflow[p.name].spilled]

    def close(self) -> None:
        if self.spool is not None:
            self._save_state(self.spool)  # a session created during the shutdown's deliveries is saved too
        with guarded():
            for source in self._adopted:
                source.spool.close()
            self._adopted = []
            if self.spool is not None:
                self.spool.close()

    def stats(self) -> dict[str, int]:
        return dict(self.spool.stats()) if self.spool is not None else {}

    def reset_after_fork(self) -> None:
        """The parent owns its spool; the child opens its own when its router starts."""
        self._init_runtime()
