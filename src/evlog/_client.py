"""A running configuration: the router and one pipeline per exporter, with flush, shutdown, stats and fork.

The client is the sink ``log_event`` feeds (see ``_intake``): it decides whether the fast path may be open,
takes the slow path's events (sampling, trace capture, after shutdown), and runs the lifecycle. It knows
nothing of ``configure()`` or of process-wide registration (exit, fork), which ``_api`` owns.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import attrs

from evlog import _intake
from evlog._accounting import DropReason, ExporterStats, Reporter, Stats
from evlog._build import NO_RARE, Raw
from evlog._config import Config
from evlog._debug import log_outcome
from evlog._durable import Keeper
from evlog._guard import guarded
from evlog._pipeline import Pipeline
from evlog._retry import RetryPolicy
from evlog._router import FlushRequest, Router
from evlog.exporters._base import AppInfo

#: The levels ``sample_rate`` never drops (unless ``sample_errors``), as ``log_event`` queues them.
_SEVERE = frozenset({"error", "critical"})

__all__ = ["Client"]


@attrs.define
class _FastPath:
    queue: Any
    limit: int
    wake_at: int
    wake: Any


class Client:
    """Everything one configuration runs."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reporter = Reporter(config.on_drop)
        policy = RetryPolicy(config.retry_initial_backoff, config.retry_max_backoff, config.retry_deadline)
        self.pipelines = [
            Pipeline(exp, max_queue_size=config.max_queue_size, policy=policy, reporter=self.reporter)
            for exp in config.exporters
        ]
        _name_duplicates(self.pipelines)
        app = AppInfo(config.release, config.environment, config.service)
        for exporter in config.exporters:
            exporter.app = app
        if config.debug:
            for pipeline in self.pipelines:
                pipeline.on_result = pipeline.delivery.on_result = log_outcome
        self.keeper: Keeper | None = None
        if config.spool_dir:
            self.keeper = Keeper(
                config.spool_dir,
                max_bytes=config.spool_max_bytes,
                max_age=config.spool_max_age,
                reporter=self.reporter,
                pipelines=self.pipelines,
            )
            for pipeline in self.pipelines:
                pipeline.on_settled = self.keeper.settled
                pipeline.origin_of = self.keeper.origin_of
        self.router = Router(
            self.pipelines,
            capacity=config.max_queue_size,
            interval=config.flush_interval,
            before_send=config.before_send,
            reporter=self.reporter,
            intake_wait=config.intake_wait,
            keeper=self.keeper,
        )
        self._sample = config.sample_rate
        self._trace = any(type(e).captures_trace_context for e in config.exporters)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self.closed = False
        #: Set when a shutdown has finished; and the thread running it meanwhile.
        self.shut_down = threading.Event()
        self.shutdown_thread: int | None = None
        self.sampled_out = 0
        #: Set when an uncaught exception starts the process's exit: the exit-time shutdown then only gets
        #: what is left of ``shutdown_timeout``, so crash + exit together stay within it.
        self.exit_deadline: float | None = None

    # --- the sink (app threads) ----------------------------------------------------------------------------

    def fast_path(self) -> _FastPath | None:
        router = self.router
        if not router.started or self.closed or self.config.disabled or self._sample < 1.0 or self._trace:
            return None
        return _FastPath(router.intake, router.capacity, router.wake_at, router.wake)

    def submit(self, raw: Raw) -> None:
        if self.closed:
            self.reporter.drop(
                DropReason.AFTER_SHUTDOWN,
                1,
                detail="log_event() was called after evlog.shutdown(); call evlog.configure() to start again",
            )
            return
        if self.config.disabled:
            return
        if self._sample < 1.0 and not self._always_kept(raw) and random.random() >= self._sample:
            with self._lock:
                self.sampled_out += 1
            return
        if self._trace:
            from evlog._trace import current_trace_context  # only for exporters that link events to traces

            rare = raw[7]
            if rare is None or type(rare) is not tuple:  # nothing rare, or only a bound context
                rare = (*NO_RARE[:6], rare)
            raw = (*raw[:7], (*rare[:5], current_trace_context(), rare[6]))
        if not self.router.started:
            self.start()
        self.router.offer(raw)

    def _always_kept(self, raw: Raw) -> bool:
        """Sampling leaves errors alone: an exception event or one at ``error`` and above is the rare event a
        sampled stream exists to keep (unless ``sample_errors`` asks for them to be sampled too)."""
        if self.config.sample_errors:
            return False
        rare = raw[7]
        return raw[1] in _SEVERE or (rare is not None and rare[4] is not None)

    def start(self) -> None:
        """Start the router and the workers (on the first event, or at configure() with a spool)."""
        with self._lock:
            if self.router.started or self.closed:
                return
            for pipeline in self.pipelines:
                pipeline.ensure_started()
            self.router.start()
        _intake.refresh(self)

    def on_uncaught(self, reason: str | None) -> None:
        """The exception hooks' entry: tell exporters the process is crashing, then deliver what is queued."""
        timeout = self.config.shutdown_timeout
        if reason is not None:
            self.note_crash(reason)
            self.exit_deadline = time.monotonic() + timeout
        with guarded():
            self.flush(timeout)

    def note_crash(self, reason: str) -> None:
        for pipeline in self.pipelines:
            with guarded():
                try:
                    pipeline.exporter.note_crash(reason)
                except Exception:
                    self.reporter.warn(
                        "note_crash", f"exporter {pipeline.name!r} raised in note_crash()", exc_info=True
                    )

    # --- control -------------------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        if not self.router.started or self.closed:
            return not self.router.intake
        deadline = time.monotonic() + max(0.0, timeout)
        request = FlushRequest([pipeline.new_marker(deadline) for pipeline in self.pipelines])
        self.router.offer(request)
        self.router.wake()
        if not request.routed.wait(max(0.0, deadline - time.monotonic())):
            return False
        for marker in request.markers:
            if not marker.done.wait(max(0.0, deadline - time.monotonic())):
                return False
        return all(marker.ok for marker in request.markers)

    def shutdown(self, timeout: float) -> bool:
        """Deliver what is queued within ``timeout`` seconds, then stop. True when nothing was cut short."""
        with self._lock:
            if self.closed:
                return True
            self.closed = True
            self.shutdown_thread = threading.get_ident()
        try:
            return self._shutdown(timeout)
        finally:
            self.shut_down.set()

    def _shutdown(self, timeout: float) -> bool:
        _intake.refresh(self)
        deadline = time.monotonic() + max(0.0, timeout)
        lost_before = self.reporter.lost()
        finished = self.router.stop(deadline)
        for pipeline in self.pipelines:
            pipeline.begin_shutdown(deadline)
        for pipeline in self.pipelines:
            finished = pipeline.finish_shutdown(deadline) and finished
        if self.keeper is not None:
            self._close_spool(self.keeper)
        self.reporter.summarise()
        # True only when every event that was waiting reached its backend (or was dropped on purpose).
        return finished and self.reporter.lost() == lost_before

    def _close_spool(self, keeper: Keeper) -> None:
        for pipeline, count in keeper.spilled_at_shutdown():
            pipeline.spilled = 0
            self.reporter.drop(
                DropReason.SHUTDOWN,
                count,
                exporter=pipeline.name,
                detail="still in the spool when this process stopped: the next process started with the same "
                "spool_dir delivers them",
            )
        keeper.close()

    def exit_timeout(self) -> float:
        """What the exit-time shutdown may take: ``shutdown_timeout``, less what a crash's flush already used."""
        timeout = self.config.shutdown_timeout
        if self.exit_deadline is not None:
            timeout = min(timeout, max(0.0, self.exit_deadline - time.monotonic()))
        return timeout

    def reset_after_fork(self) -> None:
        self._init_runtime()
        self.reporter = Reporter(self.config.on_drop)
        self.router.reset_after_fork(self.reporter)
        if self.keeper is not None:
            self.keeper.reporter = self.reporter
            self.keeper.reset_after_fork()
        for pipeline in self.pipelines:
            pipeline.reset_after_fork(self.reporter)

    def stats(self) -> Stats:
        self.router.report_intake_full()
        intake = self.router.queued()
        before = self.reporter.counts(None)
        exporters: dict[str, ExporterStats] = {}
        for pipeline in self.pipelines:
            snap = pipeline.snapshot()
            dropped = dict(before)
            for reason, n in self.reporter.counts(pipeline.name).items():
                dropped[reason] = dropped.get(reason, 0) + n
            dropped.pop(DropReason.OUTCOME_UNKNOWN.value, None)  # counted apart, as ``unknown``
            exporters[pipeline.name] = attrs.evolve(
                snap,
                queued=snap.queued + intake,
                dropped=dropped,
                # Every event meant for this exporter: the ones offered to it, the ones lost before fan-out
                # (counted for every exporter) and the ones not routed yet.
                logged=snap.logged + sum(before.values()) + intake,
            )
        spool = self.keeper.stats() if self.keeper is not None else {}
        return Stats(
            exporters=exporters, intake_queued=intake, sampled_out=self.sampled_out, dropped=before, spool=spool
        )


def _name_duplicates(pipelines: list[Pipeline]) -> None:
    """Two exporters of one kind get ``name`` and ``name#2``, so stats and drops tell them apart."""
    names = [p.name for p in pipelines]
    for name in set(names):
        if names.count(name) > 1:
            for i, p in enumerate(p for p in pipelines if p.name == name):
                p.name = f"{name}#{i + 1}" if i else name
