"""The Celery integration in a real prefork worker: every event of a task carries its id, failures included.

The broker is kombu's filesystem transport in tmp_path; tasks are sent from this process by name (it never
imports the tasks module, so evlog is not configured here), the worker's log says when each is done, and a
warm shutdown (SIGTERM) ends the pool processes, which deliver their events on ``worker_process_shutdown``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from celery import Celery

import support
from support.celery_broker import broker_options

SUPPORT = Path(support.__file__).resolve().parent


def _watch(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put("")  # the end of the output


@pytest.mark.slow
def test_every_event_of_a_prefork_workers_tasks_is_delivered_with_its_task_id(tmp_path: Path) -> None:
    producer = Celery("producer", broker="filesystem://", broker_transport_options=broker_options(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env |= {"CELERY_TEST_DIR": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=prefork", "--concurrency=2",
         "--loglevel=INFO", "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", "evlog-test@%h"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_watch, args=(worker.stdout, lines), name="test-celery-output")
    reader.start()
    output: list[str] = []
    try:
        sent = [producer.send_task("celery_tasks.add", args=[i, i]) for i in range(3)]
        sent += [producer.send_task("celery_tasks.fail", args=["o-1"])]
        pending = {result.id for result in sent}
        while pending:
            line = lines.get(timeout=60)
            assert line, "the worker ended early:\n" + "".join(output)
            output.append(line)
            pending -= set(re.findall(r"\[([0-9a-f-]{36})\] (?:succeeded|raised)", line))
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: the pool processes exit through their shutdown
        worker.wait(60)
        reader.join(10)
        worker.stdout.close()  # type: ignore[union-attr]
        producer.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    by_task: dict[str, list[str]] = {}
    for event in events:
        by_task.setdefault(event["data"]["task_id"], []).append(event["name"])
    assert by_task == {
        **{result.id: ["adding", "log.celery_tasks.work"] for result in sent[:3]},
        sent[3].id: ["charging", "exception"],
    }
    failure = next(e for e in events if e["name"] == "exception")
    assert failure["data"]["task_name"] == "celery_tasks.fail" and failure["data"]["mechanism"] == "celery"
    assert failure["exception"]["exception_type"] == "ValueError"
