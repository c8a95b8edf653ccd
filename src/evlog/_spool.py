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
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evlog._event import Event, ExceptionInfo, Level, TraceContext, User

__all__ = ["ROW_OVERHEAD", "SUFFIX", "Spool", "adopt_orphans", "decode_event", "encode_event"]

#: The spool files' suffix; the lock is ``<file>.lock`` and a file set aside is ``<file>.corrupt``.
SUFFIX = ".evspool"
#: Bytes counted per row on top of its body, for ``max_bytes`` (sqlite's row header, seq, id and index entry).
ROW_OVERHEAD = 96
#: ``PRAGMA application_id`` ("EVLG"): a file without it is not ours and is never read as a spool.
_APP_ID = 0x45564C47
#: ``PRAGMA user_version``: the schema and body format. A file of another version is set aside, not misread.
_FORMAT = 1
#: After a failed write, how long ``append`` stays quiet before trying the disk again.
_RETRY_AFTER = 5.0
#: At most this many parameters per statement (sqlite's oldest compile-time limit is 999).
_CHUNK = 500
#: Bits 0..62 of a signed 64-bit integer: the most exporters one file tracks.
_MAX_EXPORTERS = 63

_SCHEMA = f"""
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,   -- log order; rowid, so ordering and deletes by seq are free
    event_id TEXT NOT NULL,
    created REAL NOT NULL,     -- wall time of the append, for max_age
    size INTEGER NOT NULL,     -- len(body), for max_bytes
    pending INTEGER NOT NULL,  -- one bit per exporter (table exporters) still to deliver or refuse it
    body BLOB NOT NULL         -- encode_event(): JSON
);
CREATE TABLE exporters (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE);
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


def encode_event(event: Event) -> bytes:
    """The event as compact JSON bytes; raises (TypeError, ValueError...) when a value is not JSON data."""
    stamp = event.timestamp
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    user, exc, trace = event.user, event.exception, event.trace
    return _dumps(
        (
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
    ).encode("ascii")


def decode_event(body: bytes) -> Event:
    """The inverse of ``encode_event``; raises ValueError (or another ordinary exception) on a bad body."""
    raw = _loads(body)
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


_INSERT_ROWS = 100  # 600 parameters: under sqlite's oldest limit of 999


def _insert(conn: sqlite3.Connection, rows: list[tuple[int, str, float, int, int, bytes]]) -> None:
    """Many rows per INSERT statement: a fifth cheaper per row than executemany, which steps once per row."""
    for start in range(0, len(rows), _INSERT_ROWS):
        chunk = rows[start : start + _INSERT_ROWS]
        values = ",".join(["(?,?,?,?,?,?)"] * len(chunk))
        conn.execute(
            f"INSERT INTO events(seq, event_id, created, size, pending, body) VALUES {values}",  # noqa: S608
            [field for row in chunk for field in row],
        )


def _marks(n: int) -> str:
    """``?,?,...``: statements are built only from placeholders, never from data (hence the S608 noqa)."""
    return ",".join("?" * n)


_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# -------------------------------------------------------------------------------------------------- Spool


class _Live:
    """event_id -> [weakref to the Event, seq, size, pending mask] for the rows whose Event is still in memory.

    Why not an index on event_id: maintaining it doubled the spool's CPU per event. ``done`` is called with the
    ids of events its caller still holds (a batch just exported), and those events came from ``append`` or
    ``pending``, which register them here; so a dict finds their rows. An entry goes when its row goes, or, at a
    sweep, when its Event is gone from memory: the map is bounded by the events the pipelines hold, not by the
    spool (which may keep millions on disk). Rows without an entry (``unmapped``) are found by a table scan,
    which normal operation never needs.
    """

    __slots__ = ("entries", "sweep_at", "unmapped")

    def __init__(self, unmapped: int) -> None:
        self.entries: dict[str, list[Any]] = {}
        self.sweep_at = 4096
        self.unmapped = unmapped

    def add(self, event: Event, seq: int, size: int, mask: int) -> None:
        self.add_rows([event], [(seq, "", 0.0, size, mask, b"")])

    def add_rows(self, events: list[Event], rows: list[tuple[int, str, float, int, int, bytes]]) -> None:
        """Map appended ``rows`` (as inserted: seq, id, created, size, mask, body) to their ``events``."""
        entries = self.entries
        before = len(entries)
        ref = weakref.ref
        for event, row in zip(events, rows, strict=True):
            entries[event.event_id] = [ref(event), row[0], row[3], row[4]]
        self.unmapped += len(rows) - (len(entries) - before)  # an id seen again: its older row is unmapped now
        if len(entries) > self.sweep_at:
            self.sweep()

    def adopt(self, event: Event, seq: int, size: int, mask: int) -> None:
        """A row read back from disk: map it again (it may still be mapped through another live copy)."""
        entry = self.entries.get(event.event_id)
        if entry is None:
            self.unmapped -= 1
            self.add(event, seq, size, mask)
        elif entry[0]() is None:
            entry[0] = weakref.ref(event)

    def sweep(self) -> None:
        entries = self.entries
        dead = [key for key, entry in entries.items() if entry[0]() is None]
        for key in dead:
            del entries[key]
        self.unmapped += len(dead)
        self.sweep_at = max(2 * len(entries), 4096)

    def forget(self, event_id: str) -> None:
        """Its row was deleted."""
        if self.entries.pop(event_id, None) is None:
            self.unmapped -= 1


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
                empty = self._conn.execute("SELECT NOT EXISTS (SELECT 1 FROM events)").fetchone()[0] == 1
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


class Spool(_SpoolFile):
    """One spool file (<dir>/<hostname>-<pid>-<random>.evspool: sqlite, WAL), locked while this process owns it.

    No method raises: what a failing disk keeps from being written is counted in ``not_persisted`` and evlog
    carries on in memory (see ``_SpoolFile``).

    ``done`` must be given the ids of events its caller still holds (see ``_Live``); any other id still works,
    through a table scan.

    ``max_bytes`` bounds the logical size: the bodies plus ``ROW_OVERHEAD`` per row, kept in memory so checking
    it costs nothing. The file itself does not shrink (sqlite reuses freed pages) and the WAL is cut back to
    4 MiB after each checkpoint. An event id appended twice to one file is tracked by its newest row only.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int, warn: Warn) -> None:
        super().__init__(path, conn, lock_fd, warn)
        self.max_bytes = 0
        self.max_age = 0.0
        self._bits: dict[str, int] = dict(conn.execute("SELECT name, bit FROM exporters"))
        self._mask_names: tuple[object, int] = (None, 0)  # (last names collection, its mask): the router reuses one
        events, size, last = conn.execute("SELECT count(*), coalesce(sum(size), 0), max(seq) FROM events").fetchone()
        self._events: int = events
        self._bytes: int = size + events * ROW_OVERHEAD
        self._next_seq: int = (last or 0) + 1  # seqs are given here, so append knows them without asking sqlite
        self._live = _Live(unmapped=events)
        self._not_persisted = 0
        self._dropped = 0
        self._unreadable = 0

    # -- opening

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
            rows: list[tuple[int, str, float, int, int, bytes]] = []
            kept: list[Event] = []
            seq = self._next_seq
            size_sum = 0
            now = time.time()
            try:
                with _transaction(conn):  # first: a new exporter's bit is written in the same transaction
                    for event, names in items:
                        try:
                            body = encode_event(event)
                        except Exception as exc:
                            self._not_persisted += 1
                            self._warn_once("encode", f"evlog spool: an event could not be encoded ({exc!r})")
                            continue
                        size = len(body)
                        size_sum += size
                        if names is not self._mask_names[0]:
                            self._mask(names)
                        rows.append((seq, event.event_id, now, size, self._mask_names[1], body))
                        kept.append(event)
                        seq += 1
                    _insert(conn, rows)
            except Exception as exc:
                self._failed("write", exc)
                self._not_persisted += len(rows)
                self._bits = saved_bits
                self._mask_names = (None, 0)
                return 0
            self._degraded_until = None
            self._next_seq = seq
            self._events += len(rows)
            self._bytes += size_sum + ROW_OVERHEAD * len(rows)
            self._live.add_rows(kept, rows)
            return len(rows)

    # -- trimming

    def done(self, exporter: str, event_ids: Iterable[str]) -> None:
        """That exporter delivered or refused these for good; rows that no exporter still needs are deleted."""
        with self._mutex:
            bit = self._bits.get(exporter)
            if bit is None or self._closed:
                return
            flag = 1 << bit
            entries = self._live.entries
            gone: list[tuple[str, list[Any]]] = []
            kept: list[list[Any]] = []
            missing: list[str] = []
            for event_id in event_ids:
                entry = entries.get(event_id)
                if entry is None:
                    missing.append(event_id)
                elif entry[3] & flag:
                    if entry[3] == flag:
                        gone.append((event_id, entry))
                    else:
                        kept.append(entry)
            conn = self._conn
            try:
                with _transaction(conn):
                    unmapped = self._unmapped_rows(missing, flag) if missing and self._live.unmapped > 0 else []
                    # One statement per chunk, not executemany: a third of the cost per row.
                    for sql, head, seqs in (
                        ("DELETE FROM events WHERE seq IN ({})", [], [e[1] for _, e in gone]),
                        ("UPDATE events SET pending = pending & ? WHERE seq IN ({})", [~flag], [e[1] for e in kept]),
                    ):
                        for start in range(0, len(seqs), _CHUNK):
                            chunk = seqs[start : start + _CHUNK]
                            conn.execute(sql.format(_marks(len(chunk))), head + chunk)
            except Exception as exc:
                self._failed("update", exc)
                return
            pop = self._live.entries.pop
            freed = 0
            for event_id, entry in gone:
                pop(event_id)
                freed += entry[2]
            self._bytes -= freed + ROW_OVERHEAD * len(gone)
            for entry in kept:
                entry[3] &= ~flag
            self._events -= len(gone)
            for size in unmapped:
                self._live.unmapped -= 1
                self._bytes -= size + ROW_OVERHEAD
                self._events -= 1

    def _unmapped_rows(self, event_ids: list[str], flag: int) -> list[int]:
        """The slow path of ``done``: clear ``flag`` on rows found by scanning; the sizes of the rows deleted."""
        conn = self._conn
        deleted: list[int] = []
        for start in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[start : start + _CHUNK]
            sql = f"SELECT seq, pending, size FROM events WHERE event_id IN ({_marks(len(chunk))})"  # noqa: S608
            for seq, pending, size in conn.execute(sql, chunk).fetchall():
                if pending == flag:
                    conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
                    deleted.append(size)
                elif pending & flag:
                    conn.execute("UPDATE events SET pending = ? WHERE seq = ?", (pending & ~flag, seq))
        return deleted

    def pending(self, exporter: str, *, limit: int, after: int = 0) -> list[tuple[int, Event]]:
        """Up to ``limit`` events still pending for ``exporter`` with ``seq > after``, in log order.

        A row whose body cannot be decoded is deleted and counted (``unreadable``), with one warning: it can
        never be delivered, and keeping it would return it forever.
        """
        with self._mutex:
            bit = self._bits.get(exporter)
            if bit is None or self._closed or limit <= 0:
                return []
            out: list[tuple[int, Event]] = []
            try:
                rows = self._conn.execute(
                    "SELECT seq, event_id, size, pending, body FROM events WHERE seq > ? AND pending & ?"
                    " ORDER BY seq LIMIT ?",
                    (after, 1 << bit, limit),
                ).fetchall()
                bad: list[tuple[int, str, int]] = []
                for seq, event_id, size, mask, body in rows:
                    try:
                        event = decode_event(body)
                    except Exception as exc:
                        bad.append((seq, event_id, size))
                        self._warn_once("decode", f"evlog spool: unreadable event in {str(self.path)!r} ({exc!r})")
                        continue
                    out.append((seq, event))
                    self._live.adopt(event, seq, size, mask)
                if bad:
                    with _transaction(self._conn):
                        self._delete_rows(bad)
                    self._forget_rows(bad)
                    self._unreadable += len(bad)
            except Exception as exc:
                self._failed("read", exc)
            return out

    def _delete_rows(self, rows: list[tuple[int, str, int]]) -> None:
        """Delete (seq, event_id, size) rows, inside the caller's transaction."""
        self._conn.executemany("DELETE FROM events WHERE seq = ?", [(seq,) for seq, _, _ in rows])

    def _forget_rows(self, rows: list[tuple[int, str, int]]) -> None:
        """The counters and the live map after ``_delete_rows`` committed."""
        for _, event_id, size in rows:
            self._live.forget(event_id)
            self._bytes -= size + ROW_OVERHEAD
        self._events -= len(rows)

    def enforce_limits(self, now: float | None = None) -> list[tuple[Event, frozenset[str]]]:
        """Drop the oldest rows while the spool is over ``max_bytes`` or they are older than ``max_age``.

        Returns each dropped event with the exporters that lost it, for the caller to count. Cheap when nothing
        is over: the byte total is kept in memory and only the oldest rows are read.
        """
        now = time.time() if now is None else now
        dropped: list[tuple[Event, frozenset[str]]] = []
        with self._mutex:
            if self._closed:
                return dropped
            names = {bit: name for name, bit in self._bits.items()}
            cutoff = now - self.max_age if self.max_age > 0 else None
            try:
                while self._events:
                    excess = self._bytes - self.max_bytes if self.max_bytes > 0 else 0
                    rows = self._conn.execute(
                        "SELECT seq, event_id, created, size, pending, body FROM events ORDER BY seq LIMIT 256"
                    ).fetchall()
                    victims: list[tuple[int, str, int]] = []
                    lost: list[tuple[Event, frozenset[str]]] = []
                    unreadable = 0
                    for seq, event_id, created, size, pending, body in rows:
                        if excess <= 0 and (cutoff is None or created >= cutoff):
                            break
                        victims.append((seq, event_id, size))
                        excess -= size + ROW_OVERHEAD
                        try:
                            event = decode_event(body)
                        except Exception:
                            unreadable += 1
                            continue
                        lost.append((event, frozenset(name for b, name in names.items() if pending >> b & 1)))
                    if not victims:
                        break
                    with _transaction(self._conn):
                        self._delete_rows(victims)
                    self._forget_rows(victims)
                    dropped.extend(lost)
                    self._dropped += len(victims) - unreadable
                    self._unreadable += unreadable
            except Exception as exc:
                self._failed("trim", exc)
        return dropped

    # -- state

    def stats(self) -> dict[str, int]:
        """Counters for the client's stats: rows and bytes held, and what was lost on the way."""
        with self._mutex:
            return {
                "events": self._events,
                "bytes": self._bytes,
                "not_persisted": self._not_persisted,
                "dropped_by_limits": self._dropped,
                "unreadable": self._unreadable,
            }

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
