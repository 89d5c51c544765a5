"""Worker lifecycle against a real server: startup hooks run once per worker process (and once
per ``--pool process`` child) before any task, handlers see the shared ``ctx.state``, shutdown
hooks run after the drain, and a failing startup hook stops a real worker process non-zero
without it taking a task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.errors import StartupFailed
from engine.lifecycle import WorkerState
from engine.registry import Registry
from engine.task import TaskState
from engine.worker import Worker, WorkerOptions
from tests.engine import lifecycle_apps
from tests.engine.conftest import running_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]


def log(raw: redis.Redis) -> list[tuple[str, int]]:
    entries = [str(e).rsplit(":", 1) for e in raw.lrange(lifecycle_apps.LOG, 0, -1)]
    return [(what, int(pid)) for what, pid in entries]


@pytest.fixture(autouse=True)
def test_url(redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)
    raw.delete(lifecycle_apps.LOG)


async def test_startup_hooks_fill_the_state_handlers_see_and_shutdown_runs_after_the_drain(
    redis_url: str, raw: redis.Redis, client: Client
) -> None:
    tasks = [client.enqueue("lc:sync", None, queue="lc"), client.enqueue("lc:async", None, queue="lc")]
    me = os.getpid()
    async with running_worker(lifecycle_apps.hooks, redis_url, ["lc"], concurrency=2) as worker:
        await wait_until(lambda: all(client.get_task(t.id).state == TaskState.COMPLETED for t in tasks))  # type: ignore[union-attr]
        assert worker.state.pool == {"opened_by": me}
    for t in tasks:
        info = client.get_task(t.id)
        assert info is not None and info.result == {"pool": me, "client": f"client-{me}", "pid": me}
    # each startup hook once, in order, before any task; shutdown once, after both tasks
    assert log(raw) == [
        ("startup-async", me),
        ("startup-sync", me),
        ("task", me),
        ("task", me),
        (f"shutdown-{me}", me),
    ]


async def test_process_pool_children_run_the_startup_hooks_and_their_handlers_see_their_own_state(
    redis_url: str, raw: redis.Redis, client: Client
) -> None:
    task = client.enqueue("lc:sync", None, queue="lc")
    me = os.getpid()
    async with running_worker(lifecycle_apps.hooks, redis_url, ["lc"], concurrency=1, pool="process"):
        await wait_until(lambda: client.get_task(task.id).state == TaskState.COMPLETED, timeout=60)  # type: ignore[union-attr]
    info = client.get_task(task.id)
    assert info is not None
    child = info.result["pid"]
    assert child != me
    assert info.result == {"pool": child, "client": f"client-{child}", "pid": child}
    entries = log(raw)
    # the worker process and its one child each ran each startup hook once, and each its
    # shutdown hook once when the worker stopped
    assert sorted(entries) == sorted(
        [
            ("startup-async", me),
            ("startup-sync", me),
            ("startup-async", child),
            ("startup-sync", child),
            ("task", child),
            (f"shutdown-{child}", child),
            (f"shutdown-{me}", me),
        ]
    )
    assert entries.index(("startup-sync", child)) < entries.index(("task", child))


def test_a_failing_startup_hook_stops_a_real_worker_non_zero_without_taking_tasks(
    redis_url: str, raw: redis.Redis, client: Client
) -> None:
    task = client.enqueue("lc:never", None, queue="lc-broken")
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("rediq-worker")),
            "--app",
            "tests.engine.lifecycle_apps:broken",
            "--redis-url",
            redis_url,
            "--queues",
            "lc-broken",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 17, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, proc.stderr
    assert (
        "E016: startup hook tests.engine.lifecycle_apps.connect_database failed: "
        "ConnectionRefusedError: database at db:5432 refused the connection" in errors[0]
    )
    assert "Traceback" not in proc.stderr
    info = client.get_task(task.id)
    assert info is not None and info.state == TaskState.PENDING and info.attempts == 0
    assert log(raw) == []  # the handler never ran


# ---------------------------------------------------------------------------------- --burst


def run_burst_worker(redis_url: str, queues: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("rediq-worker")),
            "--app",
            "tests.engine.lifecycle_apps:burst",
            "--redis-url",
            redis_url,
            "--queues",
            queues,
            "--burst",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_burst_worker_exits_0_once_its_queues_are_drained(redis_url: str, client: Client) -> None:
    first = client.enqueue("burst:step", {"n": 1}, queue="burst")
    # released only after ``first`` completes (the dependency release keeps the worker on)
    chained = [first]
    for n in range(2, 6):
        chained.append(client.enqueue("burst:step", {"n": n}, queue="burst", depends_on=[chained[-1]]))
    retried = client.enqueue("burst:flaky", None, queue="burst")  # its retry is due at once
    due_soon = client.enqueue("burst:step", {"n": 9}, queue="burst", delay=0.5)
    later = client.enqueue("burst:step", {"n": 10}, queue="burst", delay=3600)
    proc = run_burst_worker(redis_url, "burst")
    assert proc.returncode == 0, proc.stderr
    assert "burst: the queues are drained" in proc.stderr
    for t in [*chained, retried]:
        info = client.get_task(t.id)
        assert info is not None and info.state == TaskState.COMPLETED, (t.id, info)
    info = client.get_task(retried.id)
    assert info is not None and info.result == "second attempt" and info.attempts == 2
    # scheduled for later than now: left for another worker (due_soon may or may not have come
    # due before the worker read the queues drained; either way it is not lost)
    info = client.get_task(due_soon.id)
    assert info is not None and info.state in (TaskState.SCHEDULED, TaskState.COMPLETED)
    info = client.get_task(later.id)
    assert info is not None and info.state == TaskState.SCHEDULED


def test_burst_worker_on_empty_and_paused_queues_exits_0(redis_url: str, client: Client) -> None:
    waiting = client.enqueue("burst:step", {"n": 1}, queue="burst-paused")
    client.pause("burst-paused")
    proc = run_burst_worker(redis_url, "burst-empty,burst-paused")
    assert proc.returncode == 0, proc.stderr
    info = client.get_task(waiting.id)
    assert info is not None and info.state == TaskState.PENDING and info.attempts == 0
    client.resume("burst-paused")
    proc = run_burst_worker(redis_url, "burst-paused")
    assert proc.returncode == 0, proc.stderr
    info = client.get_task(waiting.id)
    assert info is not None and info.state == TaskState.COMPLETED and info.result == 2


async def test_a_failing_shutdown_hook_is_logged_and_the_others_still_run(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    closed: list[str] = []

    @registry.on_shutdown
    def close_first_opened(state: WorkerState) -> None:
        closed.append("first")

    @registry.on_shutdown
    async def close_last_opened(state: WorkerState) -> None:
        closed.append("last")
        raise RuntimeError("already closed")

    async with running_worker(registry, redis_url, ["lc-shutdown"]):
        pass
    assert closed == ["last", "first"]  # reverse order; the error did not stop the first one
    assert "shutdown hook tests.engine.test_lifecycle" in caplog.text and "already closed" in caplog.text


async def test_a_failing_startup_hook_in_process_raises_and_runs_no_shutdown_hook(redis_url: str) -> None:
    registry = Registry()
    closed: list[str] = []

    @registry.on_startup
    def fail(state: WorkerState) -> None:
        raise ValueError("no config")

    @registry.on_shutdown
    def close(state: WorkerState) -> None:
        closed.append("closed")

    worker = Worker(registry, redis_url, WorkerOptions(queues=["lc-fail"]))
    with pytest.raises(StartupFailed, match=r"^E016: startup hook .*fail failed: ValueError: no config"):
        await worker.run()
    assert closed == []
