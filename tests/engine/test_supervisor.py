"""``rediq-worker --processes N`` with real worker processes on a real Valkey: the children take
work side by side, a SIGKILLed child is restarted and its task recovered by lease, SIGTERM
drains every child, and one /metrics covers them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine import inspect
from engine.client import Client
from engine.task import TaskState
from engine.worker.supervisor import EXIT_CRASH_LOOP, MAX_CRASHES, Supervisor, SupervisorCore
from tests.engine.conftest import wait_until_sync
from tests.engine.exit_child import exit_with
from tests.engine.supervisor_apps import PIDS, RUNS, registry
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.engine.supervisor_apps:registry"


@pytest.fixture(autouse=True)
def _test_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)


def start_supervisor(url: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = ["--app", APP, "--queues", "sup", "--redis-url", url, *extra]
    return subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import worker_main; worker_main()", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Supervisors a test starts; any still running at the end are killed with their children."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def children(client: Client, supervisor: subprocess.Popen[bytes]) -> list[inspect.WorkerSummary]:
    """The registered, live workers started by ``supervisor``."""
    return [
        w
        for w in client.call(inspect.workers)
        if w.supervisor.endswith(f":{supervisor.pid}") and not w.stale and _alive(w.pid)
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _sample(text: str, name: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.startswith(name + " ") or ln.startswith(name + "{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_two_processes_take_work_side_by_side_and_one_endpoint_serves_both(
    redis_url: str, raw: redis.Redis, tmp_path: Path, supervisors: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    log = tmp_path / "supervisor.log"
    # each child holds at most 2 tasks (1 running, 1 prefetched) and each task waits until a
    # second process has started one: four tasks complete only if both children run them
    proc = start_supervisor(
        redis_url, log, "--processes", "2", "--concurrency", "1", "--metrics-port", str(port)
    )
    supervisors.append(proc)
    with Client(redis_url, registry=registry) as client:
        sent = [client.enqueue("together", {}, queue="sup") for _ in range(4)]
        wait_until_sync(
            lambda: all((t := client.get_task(s.id)) and t.state == TaskState.COMPLETED for s in sent), 60
        )
        workers = children(client, proc)
    ran_in = {int(pid) for pid in raw.smembers(PIDS)}
    assert len(ran_in) == 2, log.read_text()
    assert ran_in == {w.pid for w in workers}  # the two children, each its own worker id
    assert len({w.id for w in workers}) == 2
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert _sample(body, "rediq_task_processed_total") == 4  # summed over both children
    assert _sample(body, "rediq_worker_processes") == 2
    assert _sample(body, "rediq_queue_pending") == 0
    assert "# TYPE rediq_group_pending gauge" in body  # read once by the supervisor, not per child
    status, health = _get(f"http://127.0.0.1:{port}/health")
    assert status == 200 and json.loads(health)["processes"] == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()


def test_a_killed_child_is_restarted_and_its_task_recovered(
    redis_url: str, raw: redis.Redis, tmp_path: Path, supervisors: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "supervisor.log"
    proc = start_supervisor(redis_url, log, "--processes", "2", "--lease", "2")
    supervisors.append(proc)
    with Client(redis_url, registry=registry) as client:
        wait_until_sync(lambda: len(children(client, proc)) == 2, 60)
        before = {w.pid for w in children(client, proc)}
        sent = client.enqueue("stall_once", {"seconds": 120}, queue="sup")
        wait_until_sync(lambda: raw.llen(RUNS) == 1, 60)
        victim = int(str(raw.lindex(RUNS, 0)).split(":")[1])
        os.kill(victim, signal.SIGKILL)
        # a new child takes the dead one's place...
        wait_until_sync(
            lambda: len(after := {w.pid for w in children(client, proc)}) == 2 and after != before, 60
        )
        # ...and the task it held runs again once its lease lapsed: nothing lost
        wait_until_sync(
            lambda: (t := client.get_task(sent.id)) is not None and t.state == TaskState.COMPLETED, 60
        )
        info = client.get_task(sent.id)
    assert info is not None and info.attempts == 2
    assert [str(run).split(":")[0] for run in raw.lrange(RUNS, 0, -1)] == ["1", "2"]
    assert "restarting it in" in log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()


def test_sigterm_drains_every_child_then_the_supervisor_exits_zero(
    redis_url: str, raw: redis.Redis, tmp_path: Path, supervisors: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "supervisor.log"
    proc = start_supervisor(redis_url, log, "--processes", "2", "--grace", "30")
    supervisors.append(proc)
    with Client(redis_url, registry=registry) as client:
        sent = client.enqueue("stall_once", {"seconds": 1.5}, queue="sup")
        wait_until_sync(lambda: raw.llen(RUNS) == 1, 60)
        wait_until_sync(lambda: len(children(client, proc)) == 2, 60)
        pids = [w.pid for w in children(client, proc)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        info = client.get_task(sent.id)
    # the running task finished within the grace period (not handed back), once
    assert info is not None and info.state == TaskState.COMPLETED and info.attempts == 1
    assert raw.llen(RUNS) == 1
    assert not any(_alive(pid) for pid in pids)
    assert log.read_text().count("second signal") == 0  # forwarded once: the grace period held


def test_a_crash_looping_child_makes_the_supervisor_give_up_with_exit_1() -> None:
    # the process part as the CLI runs it (spawned children), with a fast backoff
    core = SupervisorCore(1, backoff_base_s=0.01)
    runner = Supervisor(1, exit_with, (3,), core=core)
    assert runner.run() == EXIT_CRASH_LOOP == 1
    assert core.gave_up and core.finished
    assert runner.restarts == MAX_CRASHES - 1  # restarted 4 times, then given up


def test_children_that_finish_cleanly_are_not_restarted() -> None:
    runner = Supervisor(2, exit_with, (0,))  # what --burst children do once the queues are drained
    assert runner.run() == 0
    assert runner.restarts == 0
