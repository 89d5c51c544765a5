"""ACL users from ``docs/acl/*.acl`` loaded by a real server: the least-privilege worker user
can enqueue, inspect and run a real Worker; the read-only console user can inspect but any
write fails with ``ReadOnlyError`` (one line)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from engine import admin, explain, inspect
from engine.client import Client
from engine.errors import AuthFailed, ReadOnlyError
from engine.registry import Registry
from engine.task import TaskState
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.ha.util import PASSWORD, acl_line
from tests.servers import ServerProcess, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


# the worker user as granted before hand-off (no list commands beyond LPUSH/LRANGE/LTRIM)
OLD_WORKER_ACL = acl_line("worker.acl").replace("user rediq-worker ", "user rediq-worker-old ", 1)
for _command in (" +rpush", " +lpop", " +blpop", " +llen"):
    OLD_WORKER_ACL = OLD_WORKER_ACL.replace(_command, "")


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    aclfile = tmp_path_factory.mktemp("acl") / "users.acl"
    # the default user stays open for the test's own setup; the files are loaded verbatim
    aclfile.write_text(
        "\n".join(
            [
                "user default on nopass ~* &* +@all",
                acl_line("worker.acl"),
                acl_line("console-readonly.acl"),
                OLD_WORKER_ACL,
            ]
        )
        + "\n"
    )
    server = ServerProcess(port=free_port(), extra_args=["--aclfile", str(aclfile)]).start()
    yield server
    server.cleanup()


def url(server: ServerProcess, user: str, password: str = PASSWORD) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def clean(acl_server: ServerProcess) -> ServerProcess:
    r = redis.Redis(port=acl_server.port)
    r.flushall()
    r.close()
    return acl_server


async def test_worker_user_enqueues_inspects_and_runs_a_worker(clean: ServerProcess) -> None:
    worker_url = url(clean, "rediq-worker")
    registry = Registry()

    @registry.task("acl:job", queue="acl")
    async def job(ctx: TaskContext, payload: Any) -> str:
        return f"done {payload['n']}"

    client = Client(worker_url)
    parent = client.enqueue("acl:job", {"n": 1}, queue="acl")
    child = client.enqueue("acl:job", {"n": 2}, queue="acl", depends_on=[parent])
    assert client.call(inspect.queue, "acl").count(TaskState.WAITING) == 1  # type: ignore[union-attr]
    assert client.call(admin.pause, "acl") is True and client.call(admin.resume, "acl") is True
    worker = Worker(registry, worker_url, WorkerOptions(queues=["acl"], concurrency=2, poll_interval_s=0.1))
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            info = client.get_task(child.id, "acl")
            if info is not None and info.state == TaskState.COMPLETED:
                break
            await asyncio.sleep(0.1)
        assert client.get_task(parent.id).result == "done 1"  # type: ignore[union-attr]
        assert client.get_task(child.id).result == "done 2"  # type: ignore[union-attr]
        assert [w.id for w in client.call(inspect.workers)] == [worker.id]
        assert not running.done()
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
    client.close()


async def test_a_worker_under_an_acl_from_before_hand_off_serves_without_it(
    clean: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    old_url = url(clean, "rediq-worker-old")
    registry = Registry()

    @registry.task("acl:job", queue="acl")
    async def job(ctx: TaskContext, payload: Any) -> str:
        return f"done {payload['n']}"

    client = Client(old_url)
    worker = Worker(registry, old_url, WorkerOptions(queues=["acl"], concurrency=2, poll_interval_s=0.1))
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(1.0)  # idle: it would register for hand-offs if it could
        tasks = [client.enqueue("acl:job", {"n": n}, queue="acl") for n in range(3)]
        assert {t.state for t in tasks} == {"pending"}  # nobody registered
        for _ in range(100):
            if all(getattr(client.get_task(t.id), "state", None) == TaskState.COMPLETED for t in tasks):
                break
            await asyncio.sleep(0.1)
        assert [client.get_task(t.id).result for t in tasks] == ["done 0", "done 1", "done 2"]  # type: ignore[union-attr]
        assert worker.handed_off == 0 and not worker.options.handoff
        assert "hand-off off" in caplog.text
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
    client.close()


def test_worker_user_cannot_run_dangerous_commands(clean: ServerProcess) -> None:
    r = redis.Redis.from_url(url(clean, "rediq-worker"))
    for command in (("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "requirepass"), ("EVAL", "return 1", 0)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.execute_command(*command)
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.set("not-rediq:key", "1")  # keys outside the prefix
    r.close()


def test_console_user_reads_but_cannot_write(clean: ServerProcess) -> None:
    with Client(url(clean, "rediq-worker")) as writer:
        task = writer.enqueue("acl:job", {"n": 1}, queue="ro")
    console = Client(url(clean, "rediq-console"))
    summary = console.call(inspect.queue, "ro")
    assert summary is not None and summary.count(TaskState.PENDING) == 1
    page = console.call(inspect.page, "ro", TaskState.PENDING)
    assert [t.id for t in page.tasks] == [task.id]
    info = console.get_task(task.id)  # located through the queue registry, no SCAN
    assert info is not None and info.history
    assert console.call(inspect.workers) == []
    assert console.call(explain.why, task.id) is not None
    assert console.call(inspect.audit) == []
    for attempt in (
        lambda: console.enqueue("acl:job", None, queue="ro"),
        lambda: console.call(admin.pause, "ro"),
        lambda: console.cancel(task.id),
    ):
        with pytest.raises(ReadOnlyError) as caught:
            attempt()
        assert "\n" not in str(caught.value) and str(caught.value).startswith("E010: ")
    raw = redis.Redis.from_url(url(clean, "rediq-console"))
    for command in (("SCAN", 0), ("KEYS", "*"), ("HSET", "rediq:{ro}:t:x", "a", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            raw.execute_command(*command)
    # the console may listen to every queue's events with the engine's pattern
    pubsub = raw.pubsub()
    pubsub.psubscribe(console.settings.keyspace.events_pattern)
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    pubsub.close()
    raw.close()
    console.close()


def test_wrong_password_is_auth_failed_and_masked(clean: ServerProcess) -> None:
    client = Client(url(clean, "rediq-console", "wrong-pw-123"))
    started = time.monotonic()
    with pytest.raises(AuthFailed) as caught:
        client.call(inspect.queue_names)
    assert time.monotonic() - started < 1.5, "wrong credentials must not be retried with backoff"
    assert "wrong-pw-123" not in str(caught.value) and "\n" not in str(caught.value)
    assert "wrong-pw-123" not in repr(client.target)
    client.close()
