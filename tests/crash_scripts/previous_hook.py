"""An app that set its own sys.excepthook before evlog: it must still run, after evlog delivered the event."""

import os
import sys
from types import TracebackType

import evlog


def app_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    with open(os.environ["EVLOG_JSONL_PATH"], encoding="utf-8") as fh:
        delivered = '"name":"exception"' in fh.read()
    sys.stderr.write(f"app hook saw {exc_type.__name__}: {exc}; event already delivered: {delivered}\n")


sys.excepthook = app_hook
evlog.configure()
raise RuntimeError("boom")
