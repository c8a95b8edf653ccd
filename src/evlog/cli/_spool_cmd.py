"""``evlog spool ls|replay|purge``: what the durable spool holds, delivering it now, removing it.

``ls`` only reads (sqlite read-only, no lock taken), so it never gets in the way of a process adopting a file.
``replay`` configures the library as the app would, which adopts the files of dead processes and delivers them.
``purge`` takes each file's lock first, so it can only remove files whose owner is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import socket
import sqlite3
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import attrs

from evlog._errors import ConfigError
from evlog._spool import SUFFIX
from evlog.cli._common import close_exporters, config_arguments, environ, error, load

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "spool",
        help="list, deliver or remove what the durable spool (spool_dir) holds",
        description="ls: files in spool_dir, their owner, pending events per exporter and the oldest one's age. "
        "replay: configure evlog as the app would, so it adopts the files of dead processes, deliver them and "
        "report. purge: remove the files whose owner is gone, after confirmation (--yes skips it).",
    )
    actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("ls", help="what is waiting, per exporter and age", description="List the spool files.")
    replay = actions.add_parser("replay", help="deliver what dead processes left, now", description="Deliver now.")
    replay.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery (default 30)")
    purge = actions.add_parser("purge", help="remove the files whose owner is gone", description="Remove them.")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for parser in (sub, *actions.choices.values()):
        parser.set_defaults(spool_parser=sub)
    return sub


@attrs.frozen
class _File:
    path: Path
    owner: str
    pending: dict[str, int]
    oldest: float | None
    problem: str = ""

    @property
    def orphan(self) -> bool:
        return not self.owner.startswith("running")


def _owner(path: Path) -> str:
    """ "running (pid N)" when the process named in the file name (``<host>-<pid>-<random>``) lives on this host;
    "gone" when it does not; "other host" when the file came from elsewhere (a shared directory)."""
    host, _, pid_text = path.name.rpartition("-")[0].rpartition("-")
    try:
        pid = int(pid_text)
    except ValueError:
        return "unknown"
    if host != (re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"):  # as _spool names files
        return f"other host ({host})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass
    return f"running (pid {pid})"


def _read(path: Path) -> _File:
    owner = _owner(path)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return _File(path, owner, {}, None, f"cannot open: {exc}")
    try:
        bits = dict(conn.execute("SELECT bit, name FROM exporters").fetchall())
        pending = {name: 0 for name in bits.values()}
        oldest: float | None = None
        for created, blob in conn.execute("SELECT created, masks FROM batches ORDER BY seq"):
            masks = array("q")
            masks.frombytes(blob)
            live = False
            for mask in masks:
                for bit, name in bits.items():
                    if mask & (1 << bit):
                        pending[name] += 1
                        live = True
            if live and oldest is None:
                oldest = created
        return _File(path, owner, pending, oldest)
    except sqlite3.Error as exc:
        return _File(path, owner, {}, None, f"cannot read: {exc}")
    finally:
        conn.close()


def _files(directory: str) -> list[_File]:
    return [_read(p) for p in sorted(Path(directory).glob(f"*{SUFFIX}"))]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _ls(files: list[_File]) -> None:
    if not files:
        print("no spool files")
        return
    now = time.time()
    for f in files:
        age = f"oldest {_age(now - f.oldest)}" if f.oldest is not None else "nothing pending"
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(f.pending.items())) or "-"
        print(f"{f.path.name}  owner {f.owner}  {age}  {counts}{'  ' + f.problem if f.problem else ''}")


def _replay(args: argparse.Namespace, directory: str) -> int:
    from evlog import _api

    before = [f for f in _files(directory) if f.orphan]
    if not before:
        print("nothing to replay: no spool file of a dead process")
        return 0
    environ(args)
    try:
        _api.configure(**config_arguments(args))  # adopts the orphans and starts delivering them
    except ConfigError as exc:
        return error(exc)
    deadline = time.monotonic() + args.timeout
    left = before
    while time.monotonic() < deadline:
        _api.flush(max(0.1, min(1.0, deadline - time.monotonic())))
        names = {f.path for f in before}
        left = [f for f in _files(directory) if f.path in names and any(f.pending.values())]
        if not left:
            break
        time.sleep(0.2)
    stats = _api.stats()
    _api.shutdown(5)
    for name, figures in sorted(stats.exporters.items()):
        print(f"{name}: sent {figures.sent}, dropped {figures.dropped_total}")
    if left:
        print(f"still waiting after {args.timeout:g}s:")
        _ls(left)
        return 1
    print(f"replayed {len(before)} file(s)")
    return 0


def _purge(args: argparse.Namespace, directory: str) -> int:
    orphans = [f for f in _files(directory) if f.orphan]
    if not orphans:
        print("nothing to purge")
        return 0
    _ls(orphans)
    total = sum(sum(f.pending.values()) for f in orphans)
    if not args.yes:
        answer = input(f"remove these {len(orphans)} file(s) and the {total} event(s) they hold? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    removed = 0
    for f in orphans:
        lock = f.path.with_name(f.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            print(f"skipped {f.path.name}: its owner holds it (or another process is adopting it)")
            continue
        for side in (f.path, f.path.with_name(f.path.name + "-wal"), f.path.with_name(f.path.name + "-shm"), lock):
            with contextlib.suppress(FileNotFoundError):
                side.unlink()
        os.close(fd)
        removed += 1
    print(f"removed {removed} file(s)")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config, _where, _warnings = load(args)
    except ConfigError as exc:
        return error(exc)
    close_exporters(config)
    if not config.spool_dir:
        print("evlog: error: no spool: spool_dir is not set (EVLOG_SPOOL_DIR)", file=sys.stderr)
        return 2
    if args.action == "ls":
        _ls(_files(config.spool_dir))
        return 0
    if args.action == "replay":
        return _replay(args, config.spool_dir)
    return _purge(args, config.spool_dir)
