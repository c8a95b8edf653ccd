"""The Celery app the worker test runs in a real prefork worker (``celery -A celery_tasks worker``).

The broker is kombu's filesystem transport in ``$CELERY_TEST_DIR`` (no server); evlog is configured here, in
the worker's parent process, with the jsonl exporter writing to ``$CELERY_TEST_DIR/events.jsonl``: each pool
process starts its own pipeline after the fork and appends its own lines.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from celery import Celery
from celery_broker import broker_options

import evlog
from evlog.integrations.celery import init_app
from evlog.logging import EvlogHandler

DIR = Path(os.environ["CELERY_TEST_DIR"])


app = Celery("celery_tasks", broker="filesystem://", broker_transport_options=broker_options(DIR))
app.conf.update(worker_hijack_root_logger=False, task_acks_late=False, broker_connection_retry_on_startup=True)

# A flush interval longer than the test: the events reach the file only through the flush at process exit.
evlog.configure(exporters={"jsonl": {"path": str(DIR / "events.jsonl")}}, flush_interval=120)
init_app(app)
log = logging.getLogger("celery_tasks.work")
log.addHandler(EvlogHandler(level=logging.INFO))
log.setLevel(logging.INFO)


@app.task(name="celery_tasks.add")
def add(x: int, y: int) -> int:
    evlog.log_event("adding", data={"x": x, "y": y})
    log.info("added %s and %s", x, y)
    return x + y


@app.task(name="celery_tasks.fail")
def fail(order: str) -> None:
    evlog.log_event("charging", data={"order": order})
    raise ValueError(f"card declined for {order}")
