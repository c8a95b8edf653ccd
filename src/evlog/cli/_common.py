"""What every command shares: the configuration arguments, reading the configuration, printing errors."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from evlog._config import Config, Kind, option_specs, resolve_config
from evlog._errors import ConfigError
from evlog._options import parse_env, split_list

__all__ = ["Warnings", "add_config_arguments", "config_arguments", "environ", "error", "load", "show_warnings"]


def add_config_arguments(sub: argparse.ArgumentParser) -> None:
    group = sub.add_argument_group("configuration (as the library reads it)")
    group.add_argument(
        "--config", metavar="PATH", help="the config file (sets EVLOG_CONFIG; default ./evlog.toml or pyproject.toml)"
    )
    group.add_argument(
        "--set",
        metavar="OPTION=VALUE",
        action="append",
        default=[],
        help="an option as if given to configure(), e.g. --set flush_interval=2 (repeatable)",
    )


def environ(args: argparse.Namespace) -> dict[str, str]:
    """The environment the library reads; ``--config`` is applied to this process's own environment, so that
    a command which configures the library itself (send, spool replay) reads the same file."""
    if args.config:
        os.environ["EVLOG_CONFIG"] = args.config
    return dict(os.environ)


def config_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` pairs as ``configure()`` arguments, each parsed by its option's type as the environment is."""
    specs = {spec.name: spec for spec in option_specs()}
    out: dict[str, Any] = {}
    for pair in args.set:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or name not in specs:
            raise ConfigError(
                f"expected OPTION=VALUE with one of: {', '.join(specs)}", path=name or pair, source="--set"
            )
        spec = specs[name]
        try:
            if spec.kind is Kind.EXPORTERS or spec.kind is Kind.CALLABLES:
                out[name] = split_list(text)
            elif spec.kind is Kind.CALLABLE:
                out[name] = text
            else:
                out[name] = parse_env(text, spec.type)
        except ValueError as exc:
            raise ConfigError(str(exc), path=name, source="--set") from None
    return out


class Warnings(logging.Handler):
    """Collects the library's configuration warnings so a command can print them its own way."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def load(args: argparse.Namespace, extra: Mapping[str, Any] | None = None) -> tuple[Config, dict[str, str], list[str]]:
    """The configuration the app would get, where each value came from, and the warnings given on the way."""
    logger = logging.getLogger("evlog")
    handler = Warnings()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    env = environ(args)
    try:
        config, where = resolve_config({**config_arguments(args), **(extra or {})}, env)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    # ``--set`` values reach the library as configure() arguments; name them as the user gave them.
    where = {path: "argument (--set)" if source == "configure()" else source for path, source in where.items()}
    return config, where, handler.messages


def close_exporters(config: Config) -> None:
    """Built only to be shown or checked: release what their constructors opened."""
    for exporter in config.exporters:
        with contextlib.suppress(Exception):  # a failing shutdown must not hide the command's own result
            exporter.shutdown(0.5)


def show_warnings(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message.removeprefix('evlog: ')}", file=sys.stderr)


def error(exc: BaseException) -> int:
    print(f"evlog: error: {exc}", file=sys.stderr)
    return 2
