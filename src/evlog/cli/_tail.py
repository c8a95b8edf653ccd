"""``evlog tail``: a JSON Lines event file as one readable line per event, coloured on a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

__all__ = ["add_parser", "render", "run"]

_COLOURS = {
    "debug": "\033[2m",
    "info": "\033[36m",
    "warning": "\033[33m",
    "error": "\033[31m",
    "critical": "\033[1;31m",
}
_RESET = "\033[0m"


def add_parser(commands: Any) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        "tail",
        help="show a jsonl event file as readable lines",
        description="Print each event of a JSON Lines file (the jsonl exporter's output) as one line: time, level, "
        "name, category, message, data. Colour only on a terminal unless --color says otherwise.",
    )
    sub.add_argument("path", metavar="PATH", help="the .jsonl file")
    sub.add_argument("-f", "--follow", action="store_true", help="keep reading as events are appended (Ctrl-C ends)")
    sub.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="default: auto")
    return sub


def render(line: str, *, colour: bool) -> str:
    """One event line as text; a line that is not an event object is shown as it is, marked."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return f"? {line.rstrip()}"
    if not isinstance(event, dict):
        return f"? {line.rstrip()}"
    level = str(event.get("level", "info"))
    parts = [str(event.get("timestamp", ""))[:23].replace("T", " "), f"{level.upper():<8}", str(event.get("name", "?"))]
    if event.get("category"):
        parts.append(f"[{event['category']}]")
    if event.get("message"):
        parts.append(str(event["message"]))
    if event.get("data"):
        parts.append(json.dumps(event["data"], ensure_ascii=False, separators=(",", ":")))
    exc = event.get("exception")
    if isinstance(exc, dict):
        parts.append(f"!! {exc.get('type', '')}: {exc.get('message', exc.get('value', ''))}")
    text = " ".join(parts)
    if colour and level in _COLOURS:
        return f"{_COLOURS[level]}{text}{_RESET}"
    return text


def _pump(fh: IO[str], colour: bool) -> None:
    for line in fh:
        if line.strip():
            print(render(line, colour=colour), flush=True)


def run(args: argparse.Namespace) -> int:
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    try:
        fh = open(args.path, encoding="utf-8", errors="replace")  # noqa: SIM115 - held across the follow loop
    except OSError as exc:
        print(f"evlog: error: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return 1
    with fh:
        _pump(fh, colour)
        while args.follow:
            time.sleep(0.25)
            _pump(fh, colour)
    return 0
