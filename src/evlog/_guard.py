"""evlog's own logger and the guard that keeps evlog's work from feeding back into the app's logging.

Everything evlog logs goes to the ``evlog`` logger under ``guarded()``: a per-thread depth that the logging
bridge (``evlog.logging.EvlogHandler``) checks, so evlog's own warnings, and user hooks evlog calls, never turn
into events. It has no dependency inside evlog, so any module may use it without an import cycle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["guarded", "in_evlog", "internal_logger"]

internal_logger = logging.getLogger("evlog")
_local = threading.local()


def in_evlog() -> bool:
    """True while evlog itself is logging or calling user hooks on this thread."""
    return bool(getattr(_local, "depth", 0))


@contextmanager
def guarded() -> Iterator[None]:
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
