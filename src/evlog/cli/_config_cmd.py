"""``evlog config``: the effective configuration, each value with its source; secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs

from evlog._config_view import rows, to_text
from evlog._errors import ConfigError
from evlog.cli._common import close_exporters, error, load, show_warnings

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "config",
        help="show the effective configuration and where each value comes from",
        description="Every option with its value and its source (configure()/--set, an EVLOG_* variable, the "
        "config file, or defaults), then each exporter's options. Secrets show as *** and at most 4 characters. "
        "Exit 1 when a setting is unknown (warned about), 2 when the configuration is invalid.",
    )
    sub.add_argument("--json", action="store_true", help="one JSON object, for machines")
    return sub


def run(args: argparse.Namespace) -> int:
    try:
        config, where, warnings = load(args)
    except ConfigError as exc:
        return error(exc)
    try:
        table = rows(config, where)
        if args.json:
            print(json.dumps({"options": [attrs.asdict(r) for r in table], "warnings": warnings}, indent=2))
        else:
            show_warnings(warnings)
            print(to_text(table))
    finally:
        close_exporters(config)
    return 1 if warnings else 0  # an unknown setting is not "all well", even though the library runs
