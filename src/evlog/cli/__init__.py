"""The ``evlog`` command (``python -m evlog``): config, doctor, send, tail, spool, ui.

It reads the library's own configuration sources (``--set`` arguments, ``EVLOG_*`` variables, the config file,
``--config`` naming it) through the same ``resolve_config``, so what it shows is what the app would run with.
Exit status: 0 only when all is well; 1 when a check, a send or a replay failed; 2 for a bad configuration or
bad command-line usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evlog.cli import _config_cmd, _doctor, _send, _spool_cmd, _tail, _ui
from evlog.cli._common import add_config_arguments

__all__ = ["main"]

_COMMANDS = (_config_cmd, _doctor, _send, _tail, _spool_cmd, _ui)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="evlog",
        description="Inspect and check evlog's configuration, send a test event, read event files, manage the spool.",
        epilog="Exit status: 0 all well, 1 a check or delivery failed, 2 bad configuration or usage.",
    )
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        sub = module.add_parser(commands)
        add_config_arguments(sub)
        sub.set_defaults(run=module.run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process's exit status."""
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `evlog tail x | head`
        sys.stderr.close()
        return 0
    return status
