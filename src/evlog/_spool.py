"""The durable spool: events on disk until every exporter they were meant for is done with them.

One sqlite file per process (stdlib ``sqlite3``, WAL), written by the router thread and trimmed by the
worker threads, never touched by the app thread. A process holds an OS lock (``flock`` on a sidecar
``.lock`` file) on its spool for as long as it lives; the kernel drops that lock when the process dies, however
it dies, so a later process can tell a dead owner's file from a live one and adopt it. The lock lives in a
sidecar file, not the database, because closing any descriptor of the database would drop sqlite's own POSIX
locks on it.

The loss window: an event is on disk once the router pass that built it has called ``append`` (one transaction
per pass), so what ``kill -9`` can lose is the events of the pass under way: the router's pass interval (target
100 ms), not anything the spool adds.

Durability: ``synchronous=NORMAL`` in WAL mode makes every committed ``append`` survive the death of the
process (the data is in the OS page cache), which is what the spool is for. A power loss or kernel crash may
lose the last transactions: fsync per batch would cost far more CPU than the events themselves.

Bodies are JSON (``encode_event``), never pickle: a spool file comes from disk and must never be able to run
code in the process that adopts it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import secrets
import socket
import sqlite3
import stat
import threading
import time
import weakref
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evlog._event import Event, ExceptionInfo, Level, TraceContext, User

__all__ = ["ROW_OVERHEAD", "SUFFIX", "Spool", "adopt_orphans", "decode_event", "encode_event"]

#: The spool files' suffix; the lock is ``<file>.lock`` and a file set aside is ``<file>.corrupt``.
SUFFIX = ".evspool"
#: Bytes counted per row on top of its body and masks, for ``max_bytes`` (sqlite's row and page overhead).
ROW_OVERHEAD = 64
#: ``PRAGMA application_id`` ("EVLG"): a file without it is not ours and is never read as a spool.
_APP_ID = 0x45564C47
#: ``PRAGMA user_version``: the schema and body format. A file of another version is set aside, not misread.
_FORMAT = 1
#: After a failed write, how long ``append`` stays quiet before trying the disk again.
_RETRY_AFTER = 5.0
#: At most this many parameters per statement (sqlite's oldest compile-time limit is 999).
_CHUNK = 500
#: At most this many events per row: ``pending`` decodes a whole row to return any of its events.
_ROW_EVENTS = 1024
#: Bits 0..62 of a signed 64-bit integer: the most exporters one file tracks.
_MAX_EXPORTERS = 63

_SCHEMA = f"""
CREATE TABLE batches (
    seq INTEGER PRIMARY KEY,  -- its first event's seq; the others follow, so log order is rowid order
    created REAL NOT NULL,    -- wall time of the append, for max_age
    size INTEGER NOT NULL,    -- len(body), for max_bytes
    masks BLOB NOT NULL,      -- per event, a signed 64-bit int: one bit per exporter (table exporters) still to go
    body BLOB NOT NULL        -- a JSON array of events, each as encode_event() writes it
);
CREATE TABLE exporters (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE);
CREATE TABLE state (exporter TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (exporter, key));
PRAGMA application_id = {_APP_ID};
PRAGMA user_version = {_FORMAT};
"""

Warn = Callable[[str], None]

# ---------------------------------------------------------------------------------------------------- codec
# A positional JSON array, version first: about half the bytes of a keyed object and cheaper to build. The
# timestamp is whole microseconds since the epoch, so it round-trips exactly (a float of seconds does not).

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MICRO = _dt.timedelta(microseconds=1)


def _not_json(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _make_dumps() -> Callable[[object], str]:
    """One reusable C encoder: ``json.dumps`` builds a new one per call, half the cost of a small event.

    ensure_ascii: a str may hold lone surrogates, which only an escaped form carries through UTF-8 and back.
    No circular check: bodies are built from JSON-safe data (a cycle still fails, as RecursionError).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        return json.JSONEncoder(ensure_ascii=True, check_circular=False, separators=(",", ":")).encode
    encoder = make(None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    join = "".join

    def dumps(value: object) -> str:
        return join(encoder(value, 0))

    return dumps


_dumps = _make_dumps()
_loads = json.loads
_LEVELS = {level.value: level for level in Level}


def _user_out(user: User) -> list[Any]:
    return [
        user.id,
        user.email,
        user.phone,
        user.ip,
        user.user_agent,
        user.country,
        user.locale,
        user.app_version,
        user.custom,
        user.custom_ids,
        user.private_attributes,
    ]


def _exc_out(info: ExceptionInfo) -> list[Any]:
    return [
        info.exception_type,
        info.exception_msg,
        info.stacktrace,
        info.source_file,
        info.source_line,
        info.source_function,
        None if info.cause is None else _exc_out(info.cause),
        None if info.context is None else _exc_out(info.context),
        [_exc_out(sub) for sub in info.exceptions],
    ]


def _exc_in(raw: list[Any]) -> ExceptionInfo:
    kind, msg, stack, file, line, func, cause, context, subs = raw
    return ExceptionInfo(
        exception_type=kind,
        exception_msg=msg,
        stacktrace=tuple(stack),
        source_file=file,
        source_line=line,
        source_function=func,
        cause=None if cause is None else _exc_in(cause),
        context=None if context is None else _exc_in(context),
        exceptions=tuple(_exc_in(sub) for sub in subs),
    )


def _event_raw(event: Event) -> tuple[Any, ...]:
    stamp = event.timestamp
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    user, exc, trace = event.user, event.exception, event.trace
    return (
        _FORMAT,
        event.name,
        (stamp - _EPOCH) // _MICRO,
        event.event_id,
        event.level,  # a str subclass: JSON writes its value, without the enum's slow .value
        event.category,
        event.labels,
        event.message,
        event.data,
        None if user is None else _user_out(user),
        event.session_id,
        event.value,
        None if exc is None else _exc_out(exc),
        None if trace is None else (trace.trace_id, trace.span_id, trace.trace_flags),
    )


def _event_from_raw(raw: Any) -> Event:
    if type(raw) is not list or not raw or raw[0] != _FORMAT:
        raise ValueError("not an evlog spool body of a known format")
    _, name, micros, event_id, level, category, labels, message, data, user, session_id, value, exc, trace = raw
    return Event(
        name=name,
        timestamp=_EPOCH + _dt.timedelta(microseconds=micros),
        event_id=event_id,
        level=_LEVELS[level],
        category=category,
        labels=tuple(labels),
        message=message,
        data=data,
        user=None if user is None else User(*user),
        session_id=session_id,
        value=value,
        exception=None if exc is None else _exc_in(exc),
        trace=None if trace is None else TraceContext(*trace),
    )


def _loads_or_none(body: bytes) -> Any:
    try:
        return _loads(body)
    except ValueError:
        return None


def encode_event(event: Event) -> bytes:
    """The event as compact JSON bytes; raises (TypeError, ValueError...) when a value is not JSON data."""
    return _dumps(_event_raw(event)).encode("ascii")


def decode_event(body: bytes) -> Event:
    """The inverse of ``encode_event``; raises ValueError (or another ordinary exception) on a bad body."""
    return _event_from_raw(_loads(body))


# ----------------------------------------------------------------------------------------------- the files


def _safe_directory(directory: str | os.PathLike[str], warn: Warn, *, create: bool) -> Path | None:
    """The directory, made 0700 if missing; None (after a warning) when others could plant or read files."""
    path = Path(directory)
    try:
        if create and not path.exists():
            path.mkdir(mode=0o700, parents=True)
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; the spool's is not negotiable
        info = os.stat(path)
    except OSError as exc:
        warn(f"evlog spool: cannot use directory {str(path)!r} ({exc}); events are kept in memory only")
        return None
    if not stat.S_ISDIR(info.st_mode):
        warn(f"evlog spool: {str(path)!r} is not a directory; events are kept in memory only")
        return None
    if info.st_uid != os.geteuid():
        warn(f"evlog spool: {str(path)!r} belongs to another user; events are kept in memory only")
        return None
    if info.st_mode & 0o022:
        warn(
            f"evlog spool: {str(path)!r} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o});"
            " refusing it, events are kept in memory only (chmod 700 to use it)"
        )
        return None
    return path


def _lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _side_files(db: Path) -> tuple[Path, Path]:
    return db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")


def _take_lock(lock: Path, *, create_new: bool) -> int | None:
    """An fd holding ``flock(LOCK_EX)`` on ``lock``, or None when another open file holds it (its owner lives).

    Adopters open the lock with O_CREAT (a lock file may have been removed by hand) and, once locked, check
    that the path still names the inode they locked: a closing owner unlinks it before it lets go.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if create_new else 0)
    fd = os.open(lock, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(lock))
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def _connect(db: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are the explicit BEGIN/COMMIT below, never the module's implicit ones.
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None, timeout=1.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_size_limit=4194304")  # a WAL grown by a burst shrinks back after checkpoint
    return conn


_open_spools: weakref.WeakSet[_SpoolFile] = weakref.WeakSet()
_abandoned: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    """A forked child must neither use nor close its parent's spools (see ``Spool._abandon``)."""
    for spool in list(_open_spools):
        spool._abandon()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any error; sqlite may have rolled back already (SQLITE_FULL does)."""
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _marks(n: int) -> str:
    """``?,?,...``: statements are built only from placeholders, never from data (hence the S608 noqa)."""
    return ",".join("?" * n)


_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# -------------------------------------------------------------------------------------------------- Spool


class _SpoolFile:
    """The file's life: its lock, its one connection, closing or abandoning it, and reporting a failing disk.

    Thread-safe: one connection guarded by one lock, because ``append`` runs on the router thread and
    ``done``/``pending`` on the workers'. A disk that fails makes the spool *degraded*: one warning, then
    quiet; ``append`` tries again after ``_RETRY_AFTER`` seconds.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int, warn: Warn) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd: int | None = lock_fd
        self._warn = warn
        self._mutex = threading.Lock()
        self._degraded_until: float | None = None
        self._warned: set[str] = set()
        self._closed = False
        _open_spools.add(self)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._degraded_until = time.monotonic() + _RETRY_AFTER
        self._warn_once(
            "disk",
            f"evlog spool: cannot {what} {str(self.path)!r} ({exc}); carrying on in memory, events not persisted"
            " are counted",
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            with contextlib.suppress(Exception):  # the callback is evlog's own; belt and braces
                self._warn(message)

    @property
    def degraded(self) -> bool:
        """True after a write failed, until a later write succeeds."""
        return self._degraded_until is not None

    def close(self) -> None:
        """Release the file: delete it when nothing is pending, else leave it for a later process to adopt."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            _open_spools.discard(self)
            empty = False
            with contextlib.suppress(sqlite3.Error):
                empty = self._conn.execute("SELECT NOT EXISTS (SELECT 1 FROM batches)").fetchone()[0] == 1
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            try:
                if empty:  # the files go while the lock is held, the lock file last: see _take_lock
                    _unlink(self.path, *_side_files(self.path), _lock_path(self.path))
            except OSError as exc:
                self._warn_once("close", f"evlog spool: cannot remove {str(self.path)!r} ({exc})")
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def _abandon(self) -> None:
        """In a forked child: forget this spool without unlocking or closing anything the parent still uses.

        ``flock`` locks are shared with the child through the inherited descriptor, so the child closes its copy
        (the parent keeps the lock). Closing the inherited sqlite connection could checkpoint under the parent's
        feet, so the connection is kept referenced for ever instead.
        """
        self._closed = True
        self._mutex = threading.Lock()  # the parent may have held it at fork time
        _abandoned.append(self._conn)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def _create_file(directory: str | os.PathLike[str], warn: Warn) -> tuple[Path, sqlite3.Connection, int] | None:
    """A new locked, empty spool file in ``directory``: its path, connection and lock descriptor."""
    path = _safe_directory(directory, warn, create=True)
    if path is None:
        return None
    host = _HOST_UNSAFE.sub("_", socket.gethostname())[:64] or "host"
    db = path / f"{host}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
    lock_fd: int | None = None
    try:
        # The lock first: an adopter only looks at database files, and this one does not exist yet.
        lock_fd = _take_lock(_lock_path(db), create_new=True)
        if lock_fd is None:  # pragma: no cover - a fresh random name cannot be locked by anyone else
            raise OSError(errno.EEXIST, "lock taken")
        os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))  # sqlite keeps 0600
        conn = _connect(db)
        conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
    except (OSError, sqlite3.Error) as exc:
        warn(f"evlog spool: cannot create a spool file in {str(path)!r} ({exc}); events are kept in memory only")
        _unlink(db, *_side_files(db), _lock_path(db))
        if lock_fd is not None:
            os.close(lock_fd)
        return None
    return db, conn, lock_fd


class _Batch:
    """One row of ``batches`` in memory: the pending masks of its events, authoritative while it lives.

    Rows are per ``append`` call, not per event: sqlite's per-row work was the larger half of the spool's CPU.
    """

    __slots__ = ("__weakref__", "deleted", "masks", "seq", "size")

    def __init__(self, seq: int, masks: array[int], size: int) -> None:
        self.seq = seq
        self.masks = masks
        self.size = size
        self.deleted = False

    @property
    def weight(self) -> int:
        """What the row counts against ``max_bytes``."""
        return self.size + 8 * len(self.masks) + ROW_OVERHEAD


def _masks_from(blob: bytes) -> array[int]:
    masks = array("q")
    masks.frombytes(blob)
    return masks


class _Live:
    """event_id -> [weakref to the Event, its _Batch, its index] for the events still in memory.

    Why not an index on event ids: ``done`` is called with the ids of events its caller still holds (a batch
    just exported), and those came from ``append`` or ``pending``, which register them here. An entry goes
    when its event is done by every exporter, or, at a sweep, when its Event is gone from memory: the map is
    bounded by the events the pipelines hold, not by the spool (which may keep millions on disk). Pending
    events without an entry (``unmapped``) are found by a scan, which normal operation never needs.
    """

    __slots__ = ("entries", "sweep_at", "unmapped")

    def __init__(self, unmapped: int) -> None:
        self.entries: dict[str, list[Any]] = {}
        self.sweep_at = 4096
        self.unmapped = unmapped

    def add(self, events: list[Event], batch: _Batch, first: int = 0) -> None:
        entries = self.entries
        ref = weakref.ref
        for index, event in enumerate(events, first):
            entries[event.event_id] = [ref(event), batch, index]
        if len(entries) > self.sweep_at:
            self.sweep()

    def adopt(self, event: Event, batch: _Batch, index: int) -> None:
        """A pending event read back from disk: map it again (it may still be mapped through a live copy)."""
        entry = self.entries.get(event.event_id)
        if entry is None or entry[1] is not batch or entry[2] != index:
            self.unmapped -= 1
            self.entries[event.event_id] = [weakref.ref(event), batch, index]
        elif entry[0]() is None:
            entry[0] = weakref.ref(event)

    def sweep(self) -> None:
        entries = self.entries
        dead = [key for key, entry in entries.items() if entry[0]() is None]
        for key in dead:
            entry = entries.pop(key)
            if not entry[1].deleted and entry[1].masks[entry[2]]:
                self.unmapped += 1
        self.sweep_at = max(2 * len(entries), 4096)


class Spool(_SpoolFile):
    """One spool file (<dir>/<hostname>-<pid>-<random>.evspool: sqlite, WAL), locked while this process owns it.

    No method raises: what a failing disk keeps from being written is counted in ``not_persisted`` and evlog
    carries on in memory (see ``_SpoolFile``). One row per ``append`` call holds its events and one pending
    mask per event; a row goes when no event in it is pending for any exporter.

    ``done`` must be given the ids of events its caller still holds (see ``_Live``); any other id still works,
    through a scan. Seqs are per event and contiguous within a row, so ``pending(after=...)`` resumes exactly.

    ``max_bytes`` bounds the logical size, kept in memory so checking it costs nothing: each row's body, 8
    bytes per event and ``ROW_OVERHEAD``. Limits drop whole rows, the oldest first. The file itself does not
    shrink (sqlite reuses freed pages) and the WAL is cut back to 4 MiB after each checkpoint. Masks are in the
    host's byte order: a file is adopted on the host that wrote it.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int, warn: Warn) -> None:
        super().__init__(path, conn, lock_fd, warn)
        self.max_bytes = 0
        self.max_age = 0.0
        self._bits: dict[str, int] = dict(conn.execute("SELECT name, bit FROM exporters"))
        self._mask_names: tuple[object, int] = (None, 0)  # (last names collection, its mask): the router reuses one
        self._events = 0
        self._bytes = 0
        self._next_seq = 1  # seqs are given here, so append knows them without asking sqlite
        for seq, size, blob in conn.execute("SELECT seq, size, masks FROM batches"):
            masks = _masks_from(blob)
            self._events += len(masks) - masks.count(0)
            self._bytes += _Batch(seq, masks, size).weight
            self._next_seq = max(self._next_seq, seq + len(masks))
        self._live = _Live(unmapped=self._events)
        self._batches: weakref.WeakValueDictionary[int, _Batch] = weakref.WeakValueDictionary()
        self._not_persisted = 0
        self._dropped = 0
        self._unreadable = 0

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, max_bytes: int, max_age: float, warn: Warn) -> Spool | None:
        """This process's new spool file, or None (after one ``warn``) when the directory cannot be used."""
        created = _create_file(directory, warn)
        if created is None:
            return None
        spool = cls(*created, warn)
        spool.max_bytes, spool.max_age = max_bytes, max_age
        return spool

    # -- writing

    def _mask(self, names: Collection[str]) -> int:
        last, mask = self._mask_names
        if names is last:
            return mask
        mask = 0
        bits = self._bits
        for name in names:
            bit = bits.get(name)
            if bit is None:
                bit = self._new_bit(name)
                if bit is None:
                    continue
            mask |= 1 << bit
        self._mask_names = (names, mask)
        return mask

    def _new_bit(self, name: str) -> int | None:
        bit = len(self._bits)
        if bit >= _MAX_EXPORTERS:
            self._warn_once("bits", f"evlog spool: more than {_MAX_EXPORTERS} exporters; {name!r} is not spooled")
            return None
        self._conn.execute("INSERT INTO exporters(name, bit) VALUES (?, ?)", (name, bit))
        self._bits[name] = bit
        return bit

    def _encode(self, events: list[Event]) -> tuple[bytes, list[int]]:
        """The row's body, and the indexes of ``events`` it holds: all, unless some cannot be encoded."""
        with contextlib.suppress(Exception):  # the usual case; else find the events at fault, one by one
            return _dumps([_event_raw(e) for e in events]).encode("ascii"), list(range(len(events)))
        good: list[int] = []
        raws: list[tuple[Any, ...]] = []
        for index, event in enumerate(events):
            try:
                raw = _event_raw(event)
                _dumps(raw)
            except Exception as exc:
                self._not_persisted += 1
                self._warn_once("encode", f"evlog spool: an event could not be encoded ({exc!r})")
                continue
            good.append(index)
            raws.append(raw)
        return _dumps(raws).encode("ascii"), good

    def append(self, items: Sequence[tuple[Event, Collection[str]]]) -> int:
        """Persist each event for the exporters named with it, in one transaction; how many were written.

        An event that cannot be encoded is skipped and counted; a failing disk writes nothing (counted), warns
        once and is tried again only after a pause, so a full disk does not cost a failed write per batch.
        """
        if not items:
            return 0
        with self._mutex:
            if self._closed or (self._degraded_until is not None and time.monotonic() < self._degraded_until):
                self._not_persisted += len(items)
                return 0
            conn = self._conn
            saved_bits = self._bits.copy()
            parts: list[tuple[int, Sequence[tuple[Event, Collection[str]]], list[Event], bytes]] = []
            seq = self._next_seq
            for start in range(0, len(items), _ROW_EVENTS):
                part = items[start : start + _ROW_EVENTS]
                events = [event for event, _ in part]
                body, good = self._encode(events)
                if len(good) < len(events):
                    part = [part[i] for i in good]
                    events = [events[i] for i in good]
                if events:
                    parts.append((seq, part, events, body))
                    seq += len(events)
            if not parts:
                return 0
            written: list[tuple[_Batch, list[Event]]] = []
            now = time.time()
            try:
                with _transaction(conn):  # first: a new exporter's bit is written in the same transaction
                    for first, part, events, body in parts:
                        masks = array("q", [self._mask(names) for _, names in part])
                        conn.execute(
                            "INSERT INTO batches(seq, created, size, masks, body) VALUES (?, ?, ?, ?, ?)",
                            (first, now, len(body), masks.tobytes(), body),
                        )
                        written.append((_Batch(first, masks, len(body)), events))
            except Exception as exc:
                self._failed("write", exc)
                self._not_persisted += seq - self._next_seq
                self._bits = saved_bits
                self._mask_names = (None, 0)
                return 0
            self._degraded_until = None
            count = seq - self._next_seq
            self._next_seq = seq
            for batch, events in written:
                self._batches[batch.seq] = batch
                self._events += len(batch.masks) - batch.masks.count(0)
                self._bytes += batch.weight
                self._live.add(events, batch)
            return count

    # -- trimming

    def done(self, exporter: str, event_ids: Iterable[str]) -> None:
        """That exporter delivered or refused these for good; rows that no exporter still needs are deleted."""
        with self._mutex:
            bit = self._bits.get(exporter)
            if bit is None or self._closed:
                return
            flag = 1 << bit
            keep = ~flag
            entries = self._live.entries
            new: dict[_Batch, array[int]] = {}  # the touched rows' masks, copied: memory follows the commit
            finished: list[str] = []  # events no exporter needs any more
            missing: list[str] = []
            for event_id in event_ids:
                entry = entries.get(event_id)
                if entry is None:
                    missing.append(event_id)
                    continue
                batch, index = entry[1], entry[2]
                masks = new.get(batch)
                if masks is None:
                    if batch.deleted or not batch.masks[index] & flag:
                        continue
                    masks = new[batch] = array("q", batch.masks)
                if masks[index] & flag:  # (an id given twice is cleared once)
                    masks[index] &= keep
                    if not masks[index]:
                        finished.append(event_id)
            if missing and self._live.unmapped > 0:
                try:
                    for event_id, batch, index in self._find_unmapped(missing, flag):
                        masks = new.get(batch)
                        if masks is None:
                            masks = new[batch] = array("q", batch.masks)
                        if masks[index] & flag:
                            masks[index] &= keep
                            if not masks[index]:
                                finished.append(event_id)
                except Exception as exc:
                    self._failed("read", exc)
            if new:
                self._write_masks(new, finished)

    def _write_masks(self, new: dict[_Batch, array[int]], finished: list[str]) -> None:
        """Write the rows' new masks (delete the rows left with none), then mirror them in memory."""
        gone = [batch for batch, masks in new.items() if masks.count(0) == len(masks)]
        conn = self._conn
        try:
            with _transaction(conn):
                for start in range(0, len(gone), _CHUNK):
                    chunk = [batch.seq for batch in gone[start : start + _CHUNK]]
                    conn.execute(f"DELETE FROM batches WHERE seq IN ({_marks(len(chunk))})", chunk)  # noqa: S608
                conn.executemany(
                    "UPDATE batches SET masks = ? WHERE seq = ?",
                    [(masks.tobytes(), batch.seq) for batch, masks in new.items() if masks.count(0) < len(masks)],
                )
        except Exception as exc:
            self._failed("update", exc)
            return
        pop = self._live.entries.pop
        for event_id in finished:
            if pop(event_id, None) is None:
                self._live.unmapped -= 1  # found by the slow path
        self._events -= len(finished)
        for batch, masks in new.items():
            batch.masks = masks
        for batch in gone:
            batch.deleted = True
            self._batches.pop(batch.seq, None)
            self._bytes -= batch.weight

    def _batch(self, seq: int, blob: bytes, size: int) -> _Batch:
        """The in-memory batch for a row: the live one if any (its masks are authoritative), else a new one."""
        batch = self._batches.get(seq)
        if batch is None:
            batch = self._batches[seq] = _Batch(seq, _masks_from(blob), size)
        return batch

    def _find_unmapped(self, event_ids: list[str], flag: int) -> list[tuple[str, _Batch, int]]:
        """The slow path of ``done``: find these ids by reading every row (their events left memory early)."""
        wanted = set(event_ids)
        found: list[tuple[str, _Batch, int]] = []
        for batch, body in self._rows():
            raws = _loads_or_none(body)  # unreadable rows are dealt with by pending() and enforce_limits()
            if type(raws) is not list or len(raws) != len(batch.masks):
                continue
            for index, raw in enumerate(raws):
                if batch.masks[index] & flag and type(raw) is list and len(raw) > 3 and raw[3] in wanted:
                    found.append((raw[3], batch, index))
                    wanted.discard(raw[3])
            if not wanted:
                break
        return found

    def _rows(self, start: int = 0) -> Iterator[tuple[_Batch, bytes]]:
        """The rows from seq ``start`` on, in log order, a few at a time: a spool can hold more than memory."""
        while True:
            rows = self._conn.execute(
                "SELECT seq, size, masks, body FROM batches WHERE seq >= ? ORDER BY seq LIMIT 8", (start,)
            ).fetchall()
            if not rows:
                return
            start = rows[-1][0] + 1
            for seq, size, blob, body in rows:
                yield self._batch(seq, blob, size), body

    def pending(self, exporter: str, *, limit: int, after: int = 0) -> list[tuple[int, Event]]:
        """Up to ``limit`` events still pending for ``exporter`` with ``seq > after``, in log order.

        A row whose body cannot be decoded is deleted and counted (``unreadable``), with one warning: it can
        never be delivered, and keeping it would return it forever.
        """
        with self._mutex:
            bit = self._bits.get(exporter)
            if bit is None or self._closed or limit <= 0:
                return []
            flag = 1 << bit
            out: list[tuple[int, Event]] = []
            try:
                start = self._conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM batches WHERE seq <= ?", (after + 1,)
                ).fetchone()[0]
                for batch, body in self._rows(start):
                    self._pending_in(batch, body, flag, after, limit, out)
                    if len(out) >= limit:
                        break
            except Exception as exc:
                self._failed("read", exc)
            return out

    def _pending_in(
        self, batch: _Batch, body: bytes, flag: int, after: int, limit: int, out: list[tuple[int, Event]]
    ) -> None:
        seq, masks = batch.seq, batch.masks
        wanted = [i for i in range(max(0, after + 1 - seq), len(masks)) if masks[i] & flag][: limit - len(out)]
        if not wanted:
            return
        try:
            raws = _loads(body)
            events = [(i, _event_from_raw(raws[i])) for i in wanted]
        except Exception as exc:
            self._warn_once("decode", f"evlog spool: unreadable events in {str(self.path)!r} ({exc!r})")
            self._unreadable += len(masks) - masks.count(0)
            self._drop_batch(batch, None)
            return
        for index, event in events:
            out.append((seq + index, event))
            self._live.adopt(event, batch, index)

    def _drop_batch(self, batch: _Batch, raws: Any) -> None:
        """Delete this row whatever it still holds (limits, unreadable rows); the counters follow.

        ``raws``, the row's decoded body, names the events to unmap; without it (unreadable) the map is searched.
        """
        with _transaction(self._conn):
            self._conn.execute("DELETE FROM batches WHERE seq = ?", (batch.seq,))
        batch.deleted = True
        self._batches.pop(batch.seq, None)
        masks = batch.masks
        pending = len(masks) - masks.count(0)
        self._events -= pending
        self._bytes -= batch.weight
        entries = self._live.entries
        if type(raws) is list and len(raws) == len(masks):
            mapped = 0
            for raw, mask in zip(raws, masks, strict=True):
                event_id = raw[3] if mask and type(raw) is list and len(raw) > 3 else None
                entry = entries.get(event_id) if type(event_id) is str else None
                if entry is not None and entry[1] is batch:
                    del entries[event_id]  # type: ignore[arg-type]
                    mapped += 1
        else:
            mapped = sum(1 for entry in entries.values() if entry[1] is batch and masks[entry[2]])
        self._live.unmapped -= pending - mapped

    def enforce_limits(self, now: float | None = None) -> list[tuple[int, Event, frozenset[str]]]:
        """Drop the oldest rows while the spool is over ``max_bytes`` or they are older than ``max_age``.

        Returns each dropped event (with its seq) and the exporters that lost it, for the caller to count: an
        exporter that still holds the event in memory has not lost it, which its seq tells. Cheap when nothing
        is over: the byte total is kept in memory and only the oldest row is read.
        """
        return [(seq, event, names) for seq, event, names, _ in self._trim(now, decode=True) if event is not None]

    def trim(self, now: float | None = None) -> list[tuple[int, frozenset[str], bool]]:
        """``enforce_limits`` for the router, which only counts: (seq, exporters that lost it, expired or not).

        It reads no body and deletes the rows in one transaction: decoding and deleting a large backlog row by
        row would hold the router (and, through backpressure, the app) for seconds.
        """
        now = time.time() if now is None else now
        out: list[tuple[int, frozenset[str], bool]] = []
        with self._mutex:
            if self._closed or self._bytes <= 0:
                return out
            cutoff = now - self.max_age if self.max_age > 0 else None
            try:
                victims = self._oldest_past_limits(cutoff)
                if not victims:
                    return out
                with _transaction(self._conn):
                    seqs = [batch.seq for batch, _ in victims]
                    for start in range(0, len(seqs), _CHUNK):
                        chunk = seqs[start : start + _CHUNK]
                        self._conn.execute(f"DELETE FROM batches WHERE seq IN ({_marks(len(chunk))})", chunk)  # noqa: S608
            except Exception as exc:
                self._failed("trim", exc)
                return out
            names = {bit: name for name, bit in self._bits.items()}
            sets: dict[int, frozenset[str]] = {}  # one set per distinct mask: most events share one
            gone: set[int] = set()
            pending = 0
            for batch, expired in victims:
                batch.deleted = True
                gone.add(id(batch))
                self._batches.pop(batch.seq, None)
                self._bytes -= batch.weight
                seq = batch.seq
                for index, mask in enumerate(batch.masks):
                    if mask:
                        pending += 1
                        lost = sets.get(mask)
                        if lost is None:
                            lost = sets[mask] = frozenset(n for b, n in names.items() if mask >> b & 1)
                        out.append((seq + index, lost, expired))
            entries = self._live.entries
            stale = [key for key, entry in entries.items() if id(entry[1]) in gone]
            mapped = 0
            for key in stale:
                entry = entries.pop(key)
                mapped += 1 if entry[1].masks[entry[2]] else 0
            self._live.unmapped -= pending - mapped
            self._events -= pending
            self._dropped += pending
        return out

    def _oldest_past_limits(self, cutoff: float | None) -> list[tuple[_Batch, bool]]:
        """The oldest rows to drop (with whether each is past ``max_age``), read without their bodies."""
        victims: list[tuple[_Batch, bool]] = []
        projected = self._bytes
        start = 0
        while True:
            rows = self._conn.execute(
                "SELECT seq, created, size, masks FROM batches WHERE seq >= ? ORDER BY seq LIMIT 64", (start,)
            ).fetchall()
            if not rows:
                return victims
            for seq, created, size, blob in rows:
                expired = cutoff is not None and created < cutoff
                if not (expired or (self.max_bytes > 0 and projected > self.max_bytes)):
                    return victims
                batch = self._batch(seq, blob, size)
                victims.append((batch, expired))
                projected -= batch.weight
            start = rows[-1][0] + 1

    def _trim(self, now: float | None, *, decode: bool) -> list[tuple[int, Event | None, frozenset[str], bool]]:
        now = time.time() if now is None else now
        dropped: list[tuple[int, Event | None, frozenset[str], bool]] = []
        with self._mutex:
            if self._closed:
                return dropped
            names = {bit: name for name, bit in self._bits.items()}
            cutoff = now - self.max_age if self.max_age > 0 else None
            try:
                while self._bytes > 0:
                    over = self.max_bytes > 0 and self._bytes > self.max_bytes
                    oldest = self._conn.execute("SELECT seq, created FROM batches ORDER BY seq LIMIT 1").fetchone()
                    expired = cutoff is not None and oldest is not None and oldest[1] < cutoff
                    if oldest is None or not (over or expired):
                        break
                    batch, body = next(self._rows(oldest[0]))
                    lost: list[tuple[int, Event | None, frozenset[str], bool]] = []
                    unreadable = 0
                    raws = _loads_or_none(body) if decode else None
                    for index, mask in enumerate(batch.masks):
                        if not mask:
                            continue
                        event: Event | None = None
                        if decode:
                            try:
                                event = _event_from_raw(raws[index]) if raws is not None else None
                            except Exception:
                                event = None
                            if event is None:
                                unreadable += 1
                                continue
                        names_of = frozenset(n for b, n in names.items() if mask >> b & 1)
                        lost.append((batch.seq + index, event, names_of, expired))
                    self._drop_batch(batch, raws)
                    dropped.extend(lost)
                    self._dropped += len(lost)
                    self._unreadable += unreadable
            except Exception as exc:
                self._failed("trim", exc)
        return dropped

    # -- state

    def stats(self) -> dict[str, int]:
        """Counters for the client's stats: events pending and bytes held, and what was lost on the way."""
        with self._mutex:
            return {
                "events": self._events,
                "bytes": self._bytes,
                "not_persisted": self._not_persisted,
                "dropped_by_limits": self._dropped,
                "unreadable": self._unreadable,
            }

    def save_state(self, exporter: str, state: dict[str, str]) -> None:
        """What a later process needs to deliver this exporter's events as this one would have (the session
        server's session id), replacing what was saved before. Never raises."""
        with self._mutex:
            if self._closed:
                return
            try:
                with _transaction(self._conn):
                    self._conn.execute("DELETE FROM state WHERE exporter = ?", (exporter,))
                    self._conn.executemany(
                        "INSERT INTO state(exporter, key, value) VALUES (?, ?, ?)",
                        [(exporter, str(k), str(v)) for k, v in state.items()],
                    )
            except Exception as exc:
                self._failed("write", exc)

    def load_state(self) -> dict[str, dict[str, str]]:
        """Exporter name -> what ``save_state`` kept (empty for a file written before it existed)."""
        out: dict[str, dict[str, str]] = {}
        with self._mutex:
            try:
                for exporter, key, value in self._conn.execute("SELECT exporter, key, value FROM state"):
                    out.setdefault(str(exporter), {})[str(key)] = str(value)
            except Exception as exc:
                self._failed("read", exc)
        return out

    @property
    def over_size(self) -> bool:
        """True when the events held are past ``max_bytes`` (a counter in memory: free to ask)."""
        return self.max_bytes > 0 and self._bytes > self.max_bytes

    @property
    def last_seq(self) -> int:
        """The seq of the last event written (0 before the first)."""
        with self._mutex:
            return self._next_seq - 1

    def seq_of(self, event_id: str) -> int | None:
        """The seq ``append`` gave this event (None when it is not in memory: not written, or already done)."""
        with self._mutex:
            entry = self._live.entries.get(event_id)
            return None if entry is None else int(entry[1].seq + entry[2])

    @property
    def exporters(self) -> frozenset[str]:
        """The exporters this file has ever held events for: what an adopter must deliver through."""
        with self._mutex:
            return frozenset(self._bits)

    def __repr__(self) -> str:
        return f"<Spool {str(self.path)!r} events={self._events}>"


# ------------------------------------------------------------------------------------------------ adoption


def _open_orphan(db: Path, lock_fd: int, warn: Warn) -> Spool | None:
    """The locked orphan ``db`` as a Spool; None when it was empty (removed) or corrupt (set aside, warned)."""
    conn: sqlite3.Connection | None = None
    try:
        if os.path.getsize(db) == 0:
            raise _Empty
        conn = _connect(db)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == 0 and version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            raise _Empty  # its owner died between creating the file and its schema
        if app_id != _APP_ID or version != _FORMAT:
            raise sqlite3.DatabaseError(f"not an evlog spool of format {_FORMAT} (id {app_id}, version {version})")
        return Spool(db, conn, lock_fd, warn)
    except _Empty:
        if conn is not None:
            conn.close()
        _unlink(db, *_side_files(db), _lock_path(db))
    except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        aside = db.with_name(db.name + ".corrupt")
        try:
            os.replace(db, aside)
            wal, shm = _side_files(db)
            if wal.exists():
                os.replace(wal, aside.with_name(aside.name + "-wal"))
            _unlink(shm, _lock_path(db))
        except OSError:
            pass
        warn(f"evlog spool: {str(db)!r} is unreadable ({exc}); set aside as {aside.name!r}, its events are lost")
    os.close(lock_fd)
    return None


class _Empty(Exception):
    pass


def adopt_orphans(
    directory: str | os.PathLike[str], *, warn: Warn, max_bytes: int = 0, max_age: float = 0.0
) -> list[Spool]:
    """The spool files in ``directory`` whose owner is gone, each now locked by this process.

    The lock decides: a file whose lock can be taken has no living owner, and once this process holds it no
    other adopter can get the same file. Files this process owns are skipped the same way (``flock`` conflicts
    between two descriptors even in one process). Empty orphans are removed; corrupt ones set aside.
    ``max_bytes`` and ``max_age`` (0: none) apply to each adopted file's ``enforce_limits``.
    """
    path = _safe_directory(directory, warn, create=False)
    if path is None:
        return []
    adopted: list[Spool] = []
    try:
        candidates = sorted(path.glob(f"*{SUFFIX}"))
    except OSError as exc:
        warn(f"evlog spool: cannot list {str(path)!r} ({exc})")
        return adopted
    for db in candidates:
        try:
            lock_fd = _take_lock(_lock_path(db), create_new=False)
            if lock_fd is None:
                continue
            if not db.exists():  # removed by its last holder just before we locked: nothing to adopt
                _unlink(_lock_path(db))
                os.close(lock_fd)
                continue
        except OSError as exc:
            warn(f"evlog spool: cannot lock {str(db)!r} ({exc}); not adopted")
            continue
        spool = _open_orphan(db, lock_fd, warn)
        if spool is not None:
            spool.max_bytes, spool.max_age = max_bytes, max_age
            adopted.append(spool)
    return adopted
