"""``rediq-worker --log-format json``: every stderr line of a real worker process is one JSON
object, stamped with the worker id, and each attempt is a task_finished event."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.client import Client
from engine.task import TaskState
from tests.engine.conftest import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


def test_worker_logs_one_json_object_per_line(redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--app", "examples.quickstart.tasks:registry", "--queues", "greetings", "--log-format", "json"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from engine.cli import worker_main; worker_main()",
            *args,
            "--redis-url",
            redis_url,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(redis_url) as client:
            sent = client.enqueue("greet", {"name": "Ada"}, queue="greetings")
            wait_until_sync(
                lambda: (t := client.get_task(sent.id)) is not None and t.state == TaskState.COMPLETED
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    assert lines and all({"time", "level", "logger", "message", "worker"} <= set(line) for line in lines)
    assert len({line["worker"] for line in lines}) == 1
    finished = [line for line in lines if line.get("event") == "task_finished"]
    assert finished == [
        finished[0]
        | {"task_id": sent.id, "queue": "greetings", "type": "greet", "attempt": 1, "outcome": "completed"}
    ]
