"""``evlog send``: one event through the configured exporters, and per exporter what became of it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from typing import Any

from evlog._accounting import Drop, DropReason
from evlog._errors import ConfigError, EvlogError
from evlog.cli._common import Warnings, config_arguments, environ, error, show_warnings

__all__ = ["add_parser", "run"]

#: Refused: the backend answered and said no; retrying the same event cannot help.
_REFUSED = {DropReason.REJECTED, DropReason.FAILED}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "send",
        help="send one event and report, per exporter, sent / refused / failed",
        description="Send one real event through the configured exporters (or --exporter ones), wait for the "
        "outcome and print, per exporter: sent, refused (the backend said no, with its message) or failed "
        "(network, timeout, retries exhausted). Secrets are redacted from messages. Exit 0 only if every "
        "exporter sent it. The spool is not used.",
    )
    sub.add_argument("name", metavar="NAME", help="the event name")
    sub.add_argument("--level", default="info", choices=("debug", "info", "warning", "error", "critical"))
    sub.add_argument("--category", default=None)
    sub.add_argument("--message", default=None)
    sub.add_argument(
        "--data", metavar="KEY=VALUE", action="append", default=[], help="repeatable; VALUE as JSON if it parses"
    )
    sub.add_argument(
        "--exporter", metavar="NAME", action="append", default=[], help="only these exporters (repeatable)"
    )
    sub.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the outcome (default 15)")
    return sub


def _data(pairs: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--data expects KEY=VALUE, got {pair!r}")
        try:
            data[key] = json.loads(text)
        except json.JSONDecodeError:
            data[key] = text
    return data


def run(args: argparse.Namespace) -> int:
    from evlog import _api
    from evlog._intake import log_event

    try:
        data = _data(args.data)
    except ValueError as exc:
        return error(exc)
    drops: list[Drop] = []
    lock = threading.Lock()

    def on_drop(drop: Drop) -> None:
        with lock:
            drops.append(drop)

    overrides: dict[str, Any] = {"on_drop": on_drop, "retry_deadline": args.timeout, "flush_interval": 0.05}
    if args.exporter:
        overrides["exporters"] = args.exporter
    # One event's fate is the point: the spool is left off (an empty EVLOG_SPOOL_DIR outranks the file), so
    # configure() does not adopt other processes' spools and mix their deliveries into this report.
    environ(args)
    os.environ["EVLOG_SPOOL_DIR"] = ""
    handler = Warnings()
    logger = logging.getLogger("evlog")
    logger.addHandler(handler)
    try:
        config = _api.configure(**{**config_arguments(args), **overrides})
    except ConfigError as exc:
        logger.removeHandler(handler)
        return error(exc)
    # The configuration's warnings are shown; the library's later drop warnings stay collected, since the
    # per-exporter report below says the same, once.
    show_warnings(list(handler.messages))
    try:
        return _send_and_report(args, config, data, drops, log_event)
    finally:
        logger.removeHandler(handler)


def _send_and_report(
    args: argparse.Namespace, config: Any, data: dict[str, Any], drops: list[Drop], log_event: Any
) -> int:
    from evlog import _api

    try:
        log_event(args.name, level=args.level, category=args.category, message=args.message, data=data or None)
    except EvlogError as exc:
        _api.shutdown(1)
        return error(exc)
    _api.flush(args.timeout)
    client = _api.current_client()
    stats = client.stats() if client is not None else None
    _api.shutdown(2)
    ok = True
    for exporter in config.exporters:
        name = exporter.name
        sent = stats.exporters[name].sent if stats is not None and name in stats.exporters else 0
        mine = [d for d in drops if d.exporter in (name, None)]
        if sent and not mine:
            print(f"{name}: sent")
            continue
        ok = False
        if not mine:
            print(f"{name}: failed: no outcome within {args.timeout:g}s")
            continue
        drop = mine[0]
        verdict = "refused" if drop.reason in _REFUSED else f"failed ({drop.reason.value})"
        print(f"{name}: {verdict}: {drop.detail or 'no message'}")
    return 0 if ok else 1
