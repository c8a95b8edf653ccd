"""``evlog doctor``: every check that can be made without sending an event, each with a verdict and a fix."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import attrs

from evlog._config import find_unknown, read_config_file
from evlog._errors import ConfigError
from evlog.cli._checks import Check, Verdict, check_exporter
from evlog.cli._common import close_exporters, environ, load

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "doctor",
        help="check the configuration and each exporter's backend, without sending an event",
        description="Validate the configuration (unknown EVLOG_* variables and file keys included, with a "
        "did-you-mean), then for each exporter check name resolution, reachability, TLS, and credentials where the "
        "backend has a harmless way to test them. Exit 0 only if nothing failed.",
    )
    sub.add_argument("--json", action="store_true", help="the checks as JSON")
    return sub


def _settings(args: argparse.Namespace) -> list[Check]:
    env = environ(args)
    try:
        data, source = read_config_file(env)
    except ConfigError as exc:
        return [Check("config file", Verdict.FAIL, str(exc), "fix the file, or unset EVLOG_CONFIG")]
    found = [
        Check("config file", Verdict.OK, f"using {source}")
        if source
        else Check(
            "config file",
            Verdict.OK,
            f"none: no evlog.toml or [tool.evlog] in {os.getcwd()} (set EVLOG_CONFIG to use one from elsewhere)",
        )
    ]
    for unknown in find_unknown(env, data, source):
        fix = f"rename it to {unknown.suggestion}" if unknown.suggestion else "remove it"
        found.append(Check(unknown.name, Verdict.FAIL, unknown.message(), fix))
    return found


def _spool_check(directory: str) -> Check:
    path = Path(directory)
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        return Check(
            "spool_dir", Verdict.FAIL, f"cannot write in {existing}", "point spool_dir at a writable directory"
        )
    waiting = len(list(path.glob("*.evspool"))) if path.is_dir() else 0
    note = f"; {waiting} spool file(s) there (evlog spool ls)" if waiting else ""
    return Check("spool_dir", Verdict.OK, f"{directory} is writable{note}")


def _print(checks: list[Check]) -> None:
    width = max(len(c.subject) for c in checks)
    for c in checks:
        print(f"[{c.verdict.value:^9}] {c.subject.ljust(width)}  {c.detail}")
        if c.fix and c.verdict in (Verdict.FAIL, Verdict.WARN):
            print(f"{'':11} {'':{width}}  fix: {c.fix}")


def run(args: argparse.Namespace) -> int:
    checks = _settings(args)
    try:
        config, _where, _warnings = load(args)
    except ConfigError as exc:
        checks.append(Check(exc.path or "configuration", Verdict.FAIL, str(exc), "correct the value at that source"))
        config = None
    if config is not None:
        try:
            checks.append(
                Check("configuration", Verdict.OK, f"valid; exporters: {', '.join(e.name for e in config.exporters)}")
            )
            for exporter in config.exporters:
                checks.extend(check_exporter(exporter))
            if config.spool_dir:
                checks.append(_spool_check(config.spool_dir))
        finally:
            close_exporters(config)
    failed = any(c.verdict is Verdict.FAIL for c in checks)
    if args.json:
        print(json.dumps([{**attrs.asdict(c), "verdict": c.verdict.value} for c in checks], indent=2))
    else:
        _print(checks)
        print("\nproblems found" if failed else "\nall checks passed", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
