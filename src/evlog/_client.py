"""The client: ``log_event``'s hot path, the intake queue, the router thread, and one pipeline per exporter.

Why a router: building an attrs ``Event`` (frozen, slotted) costs more than the whole budget of ``log_event``
(about three appends to a deque). So ``log_event`` checks its arguments, stamps the time, and appends a plain
tuple to one intake deque; the router thread turns tuples into ``Event`` objects once (ids, UTC timestamps,
JSON-safe data), runs the ``before_send`` processors, and fans the shared immutable event out to every
exporter's bounded buffer. The app thread never takes a lock, never does I/O, and wakes the router only when
a batch's worth is waiting; otherwise the router wakes on the flush interval.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from time import time_ns as _time_ns
from typing import Any

import attrs

from evlog._accounting import DropReason, ExporterStats, Reporter
from evlog._config import Config, load_config
from evlog._errors import ConfigError, ExporterError
from evlog._event import Event, ExceptionInfo, Level, User, Value
from evlog._guard import guarded, internal_logger
from evlog._pipeline import FlushMarker, Pipeline
from evlog._retry import RetryPolicy
from evlog._validate import bad, check_data, check_labels, check_rare
from evlog._values import to_json_data

__all__ = ["Client", "Stats", "configure", "current_client", "flush", "log_event", "shutdown", "stats"]

_UTC = _dt.timezone.utc
# log_event queues the level's plain string: a tuple holding only strings, numbers and None can be untracked by
# the garbage collector, which otherwise re-scans every queued event at each collection (a third of the cost
# of a call). Level members are hashed like their strings, so both spellings find the entry.
_LEVELS: dict[Any, str] = {level.value: level.value for level in Level}
_LEVEL_OF: dict[str, Level] = {level.value: level for level in Level}
#: Wake the router early once the intake is this full (otherwise it wakes on the flush interval). Waking it
#: late keeps its work (building events) out of the app's bursts of calls, and batches it; half full leaves
#: room for the burst to go on while the router catches up.
_WAKE_FRACTION = 0.5

# The tuple log_event queues; materialize() reads it by position.
_Raw = tuple[Any, ...]


class _Gate:
    """What the hot path reads: a handful of attributes, swapped as a whole by configure/shutdown."""

    __slots__ = ("client", "limit", "queue", "wake", "wake_at")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        #: At this many queued events the slow path takes over (and counts the drop); 0 closes the fast path
        #: (not configured yet, shut down, disabled, sampling, trace capture, capture_events()).
        self.limit = 0
        #: The event that makes the queue this long wakes the router (once per crossing).
        self.wake_at = 0
        self.wake: Callable[[], None] = _no_wake
        self.client: Client | _Capture | None = None


def _no_wake() -> None:
    pass


_gate = _Gate()
_configure_lock = threading.RLock()


def log_event(
    name: str,
    level: Level | str = "info",
    category: str | None = None,
    labels: Iterable[str] | None = None,
    message: str | None = None,
    data: Mapping[str, Any] | None = None,
    timestamp: _dt.datetime | None = None,
    event_id: str | None = None,
    user: User | None = None,
    session_id: str | None = None,
    value: Value | None = None,
    exception: ExceptionInfo | None = None,
) -> None:
    """Record an event. Returns at once: delivery happens on background threads.

    Pass every argument after ``level`` by keyword: their order is not part of the API. (They are not
    declared keyword-only because CPython fills keyword-only defaults by dictionary look-ups, which would
    make every call about 70 ns slower.)

    Raises ``InvalidEventError`` (a ``ValueError``) when an argument is wrong, naming it and saying what is
    accepted. ``data`` values that JSON cannot hold are converted by documented rules later, on the worker.
    The event is never lost silently: if it cannot be delivered it is counted in ``stats()`` and reported.
    """
    if type(name) is not str or not name:
        bad("name", name)
    try:
        lvl = _LEVELS[level]
    except (KeyError, TypeError):
        bad("level", level)
    if category is not None and type(category) is not str:
        bad("category", category)
    if labels is not None:
        labels = check_labels(labels)
    if message is not None and type(message) is not str:
        bad("message", message)
    if data is not None:
        if type(data) is dict:
            for key in data:
                if type(key) is not str:
                    data = check_data(data)
            data = data.copy()
        else:
            data = check_data(data)
    rare = None
    if (
        timestamp is not None
        or event_id is not None
        or user is not None
        or session_id is not None
        or value is not None
        or exception is not None
    ):
        check_rare(timestamp, event_id, user, session_id, value, exception)
        rare = (event_id, user, session_id, value, exception, None)
    # Short, and holding no container in the common case: the garbage collector scans each queued tuple
    # until it untracks it, so every slot costs every call.
    raw = (name, lvl, category, labels, message, data, timestamp or _time_ns(), rare)
    gate = _gate
    queue = gate.queue
    queued = len(queue)
    if queued < gate.limit:  # 0 unless the fast path is open: one test covers both
        queue.append(raw)
        if queued == gate.wake_at:
            gate.wake()
        return
    _submit_slow(raw)


def _submit_slow(raw: _Raw) -> None:
    client = _gate.client
    if client is None:
        client = _autoconfigure()
    client.submit(raw)


def _autoconfigure() -> Client | _Capture:
    """First use without ``configure()``: configure from env / file / defaults, never crashing the app."""
    with _configure_lock:
        if _gate.client is not None:
            return _gate.client
        try:
            configure()
        except Exception as exc:  # a broken environment must never crash the app's log_event
            if not isinstance(exc, (ConfigError, ExporterError)):
                exc = ExporterError(f"{type(exc).__name__}: {exc}")
            with guarded():
                internal_logger.error(
                    "evlog: the configuration from the environment / config file is invalid (%s); "
                    "falling back to the console exporter until configure() is called",
                    exc,
                )
            from evlog.exporters.console import ConsoleExporter

            _install(Client(Config(exporters=(ConsoleExporter(),))))
        assert _gate.client is not None
        return _gate.client


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MICROS = _dt.timedelta(microseconds=1)
# Event ids: random UUID4s from a private generator (an app calling random.seed() cannot make ids repeat),
# reseeded in forked children. Formatting them by hand is three times cheaper than uuid.uuid4().
_rng = random.Random(os.urandom(32))
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC << 60))
_UUID4_SET = (0x4000 << 64) | (0x8 << 60)


def new_event_id() -> str:
    """A random UUID4 string, unique across processes."""
    h = f"{(_rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _to_datetime(stamp: Any) -> _dt.datetime:
    if type(stamp) is int:
        return _EPOCH + ((stamp + 500) // 1000) * _MICROS  # nearest microsecond
    moment: _dt.datetime = stamp
    return moment.astimezone(_UTC)


_NO_RARE = (None, None, None, None, None, None)


def materialize(raw: _Raw, reporter: Reporter) -> Event:
    """Build the immutable event from log_event's tuple (on a background thread)."""
    name, lvl, category, labels, message, data, stamp, rare = raw
    event_id, user, session_id, value, exc, trace = rare or _NO_RARE
    if data:
        data, problems = to_json_data(data)
        for problem in problems:
            reporter.warn(
                f"data:{problem.split(':', 1)[0]}",
                f"event {name!r}: a data value JSON cannot hold was replaced by a placeholder ({problem})",
            )
    return Event(
        name=name,
        timestamp=_to_datetime(stamp),
        event_id=event_id or new_event_id(),
        level=_LEVEL_OF[lvl],
        category=category,
        labels=labels or (),
        message=message,
        data=data or {},
        user=user,
        session_id=session_id,
        value=value,
        exception=exc,
        trace=trace,
    )


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

    def __getitem__(self, exporter: str) -> ExporterStats:
        return self.exporters[exporter]


class _FlushRequest:
    __slots__ = ("markers", "routed")

    def __init__(self, markers: list[FlushMarker]) -> None:
        self.markers = markers
        self.routed = threading.Event()


class Client:
    """Everything one configuration runs: the intake, the router and a pipeline per exporter."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reporter = Reporter(config.on_drop)
        policy = RetryPolicy(config.retry_initial_backoff, config.retry_max_backoff, config.retry_deadline)
        self.pipelines = [
            Pipeline(exp, max_queue_size=config.max_queue_size, policy=policy, reporter=self.reporter)
            for exp in config.exporters
        ]
        names = [p.name for p in self.pipelines]
        for name in set(names):
            if names.count(name) > 1:
                for i, p in enumerate(p for p in self.pipelines if p.name == name):
                    p.name = f"{name}#{i + 1}" if i else name
        self.cap = config.max_queue_size
        self.wake_at = max(1, int(self.cap * _WAKE_FRACTION))
        self._sample = config.sample_rate
        self._trace = any(type(e).captures_trace_context for e in config.exporters)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self.intake: deque[Any] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._router: threading.Thread | None = None
        self._stop_router = False
        self.closed = False
        self.sampled_out = 0
        #: Set when an uncaught exception starts the process's exit: the exit-time shutdown then only gets
        #: what is left of ``shutdown_timeout``, so crash + exit together stay within it.
        self.exit_deadline: float | None = None
        self._intake_full = 0
        self._intake_full_reported = 0
        self.pid = os.getpid()

    # --- intake (app threads) ------------------------------------------------------------------------------

    @property
    def fast_ok(self) -> bool:
        return (
            self._router is not None
            and not self.closed
            and not self.config.disabled
            and self._sample >= 1.0
            and not self._trace
        )

    def submit(self, raw: _Raw) -> None:
        if self.closed:
            self.reporter.drop(
                DropReason.AFTER_SHUTDOWN,
                1,
                detail="log_event() was called after evlog.shutdown(); call evlog.configure() to start again",
            )
            return
        if self.config.disabled:
            return
        if self._sample < 1.0 and random.random() >= self._sample:
            with self._lock:
                self.sampled_out += 1
            return
        if self._trace:
            from evlog._trace import current_trace_context

            rare = raw[7] or (None, None, None, None, None, None)
            raw = (*raw[:7], (*rare[:5], current_trace_context()))
        if self._router is None:
            self._start()
        queue = self.intake
        if len(queue) >= self.cap:
            # Counted here, reported by the router: the app thread only pays for a lock.
            with self._lock:
                self._intake_full += 1
            if not self._wake.is_set():
                self._wake.set()
            return
        queue.append(raw)
        if len(queue) >= self.wake_at and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._router is not None or self.closed:
                return
            for pipeline in self.pipelines:
                pipeline.ensure_started()
            router = threading.Thread(target=self._route_loop, name="evlog-router", daemon=True)
            self._router = router
            router.start()
        self._update_gate()

    def _update_gate(self) -> None:
        with _configure_lock:
            if _gate.client is self:
                _install(self)

    # --- router thread -------------------------------------------------------------------------------------

    def _route_loop(self) -> None:
        interval = self.config.flush_interval
        next_tick = time.monotonic() + interval
        try:
            while True:
                timeout = next_tick - time.monotonic()
                # Under sustained load the intake refills while a pass runs: go again without waiting.
                if timeout > 0 and not self._stop_router and len(self.intake) < self.wake_at:
                    self._wake.wait(timeout)
                self._wake.clear()
                self._route_pending()
                now = time.monotonic()
                if now >= next_tick:
                    for pipeline in self.pipelines:
                        pipeline.tick()
                    next_tick = now + interval
                if self._stop_router and not self.intake:
                    return
        except Exception:  # pragma: no cover - a bug here must be visible, not silent
            self.reporter.warn("router", "the evlog router stopped on an error", exc_info=True)

    def _route_pending(self) -> None:
        queue = self.intake
        pipelines = self.pipelines
        full: dict[int, list[Event]] = {}
        unbuilt = 0
        before_send = self.config.before_send
        # One pass takes what is there when it starts, so it ends (and reports its drops, and lets the
        # interval tick) even while the app keeps logging faster than events can be built.
        for _ in range(len(queue)):
            try:
                item = queue.popleft()
            except IndexError:  # pragma: no cover - only this thread takes from the intake
                break
            if type(item) is _FlushRequest:
                for pipeline, marker in zip(pipelines, item.markers, strict=True):
                    pipeline.add_marker(marker)
                item.routed.set()
                continue
            if all(pipeline.is_full for pipeline in pipelines):
                # No exporter has room: building the event only to drop it would cost CPU and memory.
                unbuilt += 1
                continue
            try:
                built = materialize(item, self.reporter)
            except Exception as exc:  # pragma: no cover - validated input should always build
                self.reporter.drop(DropReason.PROCESSOR_ERROR, 1, detail=f"could not build the event: {exc!r}")
                continue
            event = self._process(built) if before_send else built
            if event is None:
                continue
            for index, pipeline in enumerate(pipelines):
                if not pipeline.put(event):
                    full.setdefault(index, []).append(event)
        self._report_intake_full()
        if unbuilt:
            self.reporter.drop(
                DropReason.QUEUE_FULL,
                unbuilt,
                detail="every exporter's buffer was full (max_queue_size) and the backends are behind",
            )
        for index, events in full.items():
            pipeline = pipelines[index]
            self.reporter.drop(
                DropReason.QUEUE_FULL,
                len(events),
                exporter=pipeline.name,
                events=events,
                detail=f"its buffer holds max_queue_size={pipeline.cap} events and the backend is behind",
            )

    def _report_intake_full(self) -> None:
        with self._lock:
            lost = self._intake_full - self._intake_full_reported
            self._intake_full_reported = self._intake_full
        if lost:
            self.reporter.drop(
                DropReason.QUEUE_FULL,
                lost,
                detail=f"the intake queue held max_queue_size={self.cap} events; the app logs faster than "
                "events can be processed",
            )

    def _process(self, event: Event) -> Event | None:
        for processor in self.config.before_send:
            try:
                with guarded():
                    out = processor(event)
            except Exception as exc:
                self.reporter.warn(
                    f"processor:{getattr(processor, '__qualname__', processor)!s}",
                    f"before_send processor {processor!r} raised; its event is dropped",
                    exc_info=True,
                )
                self.reporter.drop(
                    DropReason.PROCESSOR_ERROR, 1, events=(event,), detail=f"{type(exc).__name__}: {exc}"
                )
                return None
            if out is None:
                self.reporter.drop(DropReason.BEFORE_SEND, 1, events=(event,), detail=repr(processor))
                return None
            if not isinstance(out, Event):
                self.reporter.drop(
                    DropReason.PROCESSOR_ERROR,
                    1,
                    events=(event,),
                    detail=f"before_send processor {processor!r} returned {type(out).__name__}, not an Event",
                )
                return None
            event = out
        return event

    # --- control -------------------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        if self._router is None or self.closed:
            return not self.intake
        deadline = time.monotonic() + max(0.0, timeout)
        request = _FlushRequest([FlushMarker(deadline) for _ in self.pipelines])
        self.intake.append(request)
        self._wake.set()
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
        self._update_gate()
        deadline = time.monotonic() + max(0.0, timeout)
        finished = True
        router = self._router
        if router is not None:
            self._stop_router = True
            self._wake.set()
            router.join(max(0.0, deadline - time.monotonic()))
            if router.is_alive():
                finished = False
                leftover = sum(1 for item in list(self.intake) if type(item) is tuple)
                self.intake.clear()
                self.reporter.drop(
                    DropReason.SHUTDOWN,
                    leftover,
                    detail="still in the intake queue when the shutdown timeout ran out "
                    "(a before_send processor may be blocking)",
                )
            else:
                # A call that raced shutdown may have queued after the router's last pass: count it.
                late = sum(1 for item in list(self.intake) if type(item) is tuple)
                self.intake.clear()
                self.reporter.drop(DropReason.AFTER_SHUTDOWN, late, detail="logged while shutdown was under way")
        for pipeline in self.pipelines:
            pipeline.begin_shutdown(deadline)
        for pipeline in self.pipelines:
            finished = pipeline.finish_shutdown(deadline) and finished
        self.reporter.summarise()
        return finished

    def note_crash(self, reason: str) -> None:
        for pipeline in self.pipelines:
            with guarded():
                try:
                    pipeline.exporter.note_crash(reason)
                except Exception:
                    self.reporter.warn(
                        "note_crash", f"exporter {pipeline.name!r} raised in note_crash()", exc_info=True
                    )

    def reset_after_fork(self) -> None:
        self._init_runtime()
        self.reporter = Reporter(self.config.on_drop)
        for pipeline in self.pipelines:
            pipeline.reporter = self.reporter
            pipeline.reset_after_fork()

    def stats(self) -> Stats:
        self._report_intake_full()
        before = self.reporter.counts(None)
        exporters: dict[str, ExporterStats] = {}
        for pipeline in self.pipelines:
            snap = pipeline.snapshot()
            dropped = dict(before)
            for reason, n in self.reporter.counts(pipeline.name).items():
                dropped[reason] = dropped.get(reason, 0) + n
            exporters[pipeline.name] = attrs.evolve(snap, dropped=dropped)
        intake = sum(1 for item in list(self.intake) if type(item) is tuple)
        return Stats(exporters=exporters, intake_queued=intake, sampled_out=self.sampled_out, dropped=before)


class _Capture:
    """Stands in for the client inside ``evlog.testing.capture_events()``: events are built synchronously."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reporter = Reporter(None)

    def submit(self, raw: _Raw) -> None:
        self.events.append(materialize(raw, self.reporter))


def _install(client: Client | _Capture | None) -> Client | _Capture | None:
    """Make ``client`` the active one; returns the previous one."""
    with _configure_lock:
        previous = _gate.client
        _gate.limit = 0
        _gate.client = client
        if isinstance(client, Client):
            _gate.queue = client.intake
            _gate.wake_at = client.wake_at
            _gate.wake = client._wake.set
            _gate.limit = client.cap if client.fast_ok else 0
        return previous


def current_client() -> Client | None:
    client = _gate.client
    return client if isinstance(client, Client) else None


def configure(
    *,
    exporters: Any = None,
    flush_interval: float | None = None,
    max_queue_size: int | None = None,
    shutdown_timeout: float | None = None,
    retry_deadline: float | None = None,
    retry_initial_backoff: float | None = None,
    retry_max_backoff: float | None = None,
    sample_rate: float | None = None,
    disabled: bool | None = None,
    capture_exceptions: bool | None = None,
    before_send: Any = None,
    on_drop: Any = None,
) -> Config:
    """Set up evlog. Arguments left as ``None`` come from ``EVLOG_*`` variables, the config file, or defaults.

    ``exporters`` is a list of names and/or ``Exporter`` instances (``["console", StatsigExporter(...)]``), or a
    mapping of names to their options (``{"jsonl": {"path": "events.jsonl"}}``). Calling ``configure`` again
    replaces the configuration: the previous one is flushed and shut down (within its ``shutdown_timeout``).
    Raises ``ConfigError`` naming the bad value and where it came from.
    """
    args = {
        "exporters": exporters,
        "flush_interval": flush_interval,
        "max_queue_size": max_queue_size,
        "shutdown_timeout": shutdown_timeout,
        "retry_deadline": retry_deadline,
        "retry_initial_backoff": retry_initial_backoff,
        "retry_max_backoff": retry_max_backoff,
        "sample_rate": sample_rate,
        "disabled": disabled,
        "capture_exceptions": capture_exceptions,
        "before_send": before_send,
        "on_drop": on_drop,
    }
    config = load_config(args)
    client = Client(config)
    with _configure_lock:
        previous = _install(client)
    if isinstance(previous, Client):
        previous.shutdown(previous.config.shutdown_timeout)
    _apply_exception_capture(config.capture_exceptions)
    return config


_hooks_from_config = False


def _apply_exception_capture(enabled: bool) -> None:
    """Install the uncaught-exception hooks, or remove them if an earlier ``configure()`` installed them.

    Hooks the app installed itself (``evlog.install_exception_hooks()``) are left alone by a ``configure()``
    that does not ask for them.
    """
    global _hooks_from_config
    from evlog import _excepthook

    if enabled:
        _excepthook.install()
        _hooks_from_config = True
    elif _hooks_from_config:
        _excepthook.uninstall()
        _hooks_from_config = False


def flush(timeout: float = 5.0) -> bool:
    """Hand off everything queued so far. True when done within ``timeout`` seconds, False otherwise."""
    client = current_client()
    if client is None:
        return True
    return client.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Deliver what is queued and stop, taking at most ``timeout`` seconds (default: ``shutdown_timeout``).

    Runs by itself at interpreter exit. Afterwards ``log_event`` is a counted no-op until ``configure()``.
    Returns True when everything finished in time.
    """
    client = current_client()
    if client is None:
        return True
    return client.shutdown(client.config.shutdown_timeout if timeout is None else timeout)


def stats() -> Stats:
    """Figures per exporter: queued, sent, retried and dropped by reason."""
    client = current_client()
    if client is None:
        return Stats(exporters={})
    return client.stats()


def _after_fork_in_child() -> None:
    _rng.seed(os.urandom(32))
    client = _gate.client
    if isinstance(client, Client):
        client.reset_after_fork()
        _install(client)


def _at_exit() -> None:
    client = current_client()
    if client is not None:
        timeout = client.config.shutdown_timeout
        if client.exit_deadline is not None:
            timeout = min(timeout, max(0.0, client.exit_deadline - time.monotonic()))
        client.shutdown(timeout)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
