"""Celery: each task runs with its name and id bound, its failure is recorded, and worker processes deliver
their events before they exit.

    app = Celery("shop")
    evlog.configure(...)          # in the worker's parent process: each pool process starts its own pipeline
    init_app(app)

Celery's prefork pool runs tasks in forked processes. evlog starts a fresh pipeline in a forked child by
itself; but a pool process ends with ``os._exit`` (no ``atexit``), so the events still queued there would be
lost: ``worker_process_shutdown`` delivers them first (``flush_timeout`` seconds at most). A task's failure is
caught by Celery (it stores the result and goes on), so it is recorded from ``task_failure``, which Celery
sends on the task's thread while the task's context is still bound (``mechanism: celery``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Celery, signals

from evlog import _api, _context
from evlog._guard import guarded, internal_logger
from evlog.integrations._request import record_exception

__all__ = ["init_app"]

#: task id -> its context block, entered at task_prerun and left at task_postrun (same thread, same process).
_blocks: dict[str, _context.context] = {}
_flush_timeout = 5.0


def _warn(what: str) -> None:
    with guarded(), contextlib.suppress(Exception):
        internal_logger.warning("evlog: could not %s", what, exc_info=True)


def _prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    try:
        data = {"task_id": task_id, "task_name": getattr(task, "name", None) or getattr(sender, "name", None)}
        retries = getattr(getattr(task, "request", None), "retries", 0)
        if retries:
            data["task_retries"] = retries
        block = _context.context(data=data)
        block.__enter__()
        if task_id is not None:
            _blocks[task_id] = block
    except Exception:
        _warn("bind the task's context")


def _postrun(task_id: str | None = None, **_: Any) -> None:
    block = _blocks.pop(task_id, None) if task_id is not None else None
    if block is not None:
        try:
            block.__exit__(None, None, None)
        except Exception:
            _warn("end the task's context")


def _failure(exception: BaseException | None = None, **_: Any) -> None:
    if exception is not None:
        record_exception(exception, "celery")


def _process_shutdown(**_: Any) -> None:
    try:
        _api.flush(_flush_timeout)
    except Exception:
        _warn("deliver the events of a worker process that is exiting")


def init_app(app: Celery | None = None, *, flush_timeout: float = 5.0) -> None:
    """Connect evlog to Celery's signals (once, whatever the number of calls): context per task, failures, flush.

    The signals are process-wide, so tasks of every Celery app in the process are covered; ``app`` is accepted
    for symmetry with the other integrations and future per-app options.
    """
    global _flush_timeout
    _flush_timeout = flush_timeout
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="evlog.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="evlog.postrun")
    signals.task_failure.connect(_failure, weak=False, dispatch_uid="evlog.failure")
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False, dispatch_uid="evlog.process_shutdown")
