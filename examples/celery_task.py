"""Celery tasks with evlog: every event of a task carries its name and id; its failure is recorded with them.

    pip install 'evlog[celery]'
    celery -A examples.celery_task worker --pool=prefork     # with CELERY_BROKER_URL set to your broker
    python examples/celery_task.py                            # or: run two tasks here, without a worker

In a prefork worker, evlog is configured once in the parent (here, at import) and each pool process starts
its own pipeline, delivering its events when it exits. tests/test_examples.py runs these tasks.
"""

from __future__ import annotations

import os

from celery import Celery

import evlog
from evlog.integrations.celery import init_app

app = Celery("orders", broker=os.environ.get("CELERY_BROKER_URL", "memory://"))
init_app(app)  # context per task (task_name, task_id), failures recorded, flush when a pool process exits


@app.task(name="orders.charge")
def charge(order_id: str, amount: float) -> str:
    evlog.log_event("charge_started", category="payments", value=amount, data={"order_id": order_id})
    if amount <= 0:
        raise ValueError(f"nothing to charge for {order_id}")  # recorded: event "exception", with task_id
    evlog.log_event("charge_completed", category="payments", value=amount, data={"order_id": order_id})
    return order_id


if __name__ == "__main__":
    evlog.configure(exporters=["console"])
    charge.apply(args=["o-1", 25.0])  # runs here as a worker would run it, signals included
    charge.apply(args=["o-2", 0.0])
    evlog.shutdown()
