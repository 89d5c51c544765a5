"""ACL users from ``docs/acl/*.acl`` loaded by a real server (verbatim as an aclfile, and
replayed with ``ACL SETUSER``): the least-privilege worker user calls rediq's function library
(installed by an admin) and serves every feature, including ``durable`` enqueue (``WAIT``)
against a replica, but cannot run Lua of its own, load functions or touch other keys; the
read-only console user can inspect but any write fails with ``ReadOnlyError`` (one line)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from engine import admin, explain, inspect, lua, scheduler
from engine.backend import cmd
from engine.cli import cli, run
from engine.client import Client
from engine.cron import CronDef
from engine.errors import AuthFailed, FunctionsMissing, ReadOnlyError
from engine.registry import Registry
from engine.task import TaskState
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.ha.util import ACL_DIR, PASSWORD, acl_file, acl_line, acl_setuser_args
from tests.servers import ServerProcess, free_port, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


# the worker user as granted before hand-off (no list commands beyond LPUSH/LRANGE/LTRIM)
OLD_WORKER_ACL = acl_line("worker.acl").replace("user rediq-worker ", "user rediq-worker-old ", 1)
for _command in (" +rpush", " +lpop", " +blpop", " +llen"):
    OLD_WORKER_ACL = OLD_WORKER_ACL.replace(_command, "")
# the worker user as granted before takes (hand-offs popped, then started: no BLMOVE)
PRE_TAKE_ACL = acl_line("worker.acl").replace("user rediq-worker ", "user rediq-worker-pretake ", 1)
PRE_TAKE_ACL = PRE_TAKE_ACL.replace(" +blmove", "").replace(" +lmove", "")


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
                PRE_TAKE_ACL,
            ]
        )
        + "\n"
    )
    server = ServerProcess(port=free_port(), extra_args=["--aclfile", str(aclfile)]).start()
    # a replica (it links as the open default user), so durable enqueue's WAIT has one to count
    replica = ServerProcess(
        port=free_port(), extra_args=["--replicaof", "127.0.0.1", str(server.port)]
    ).start()
    primary = redis.Redis(port=server.port, decode_responses=True)
    # online, not just connected: a full sync first waits out repl-diskless-sync-delay (5 s)
    wait_for(
        "replica online", lambda: primary.info("replication").get("slave0", {}).get("state") == "online", 30
    )
    primary.close()
    yield server
    replica.cleanup()
    server.cleanup()


def _replica_state(primary: redis.Redis) -> str:
    return str(primary.info("replication").get("slave0", {}).get("state"))


def url(server: ServerProcess, user: str, password: str = PASSWORD) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def clean(acl_server: ServerProcess) -> ServerProcess:
    """Empty, with this version's function library installed by the admin (default) user."""
    r = redis.Redis(port=acl_server.port)
    r.flushall()
    r.function_flush()
    r.function_load(lua.library().source)
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


@contextlib.asynccontextmanager
async def acl_job_worker(worker_url: str) -> AsyncIterator[tuple[Client, Worker]]:
    """A client and a running worker (2 slots, queue "acl", task "acl:job") as ``worker_url``'s
    user; the worker is stopped and the client closed after."""
    registry = Registry()

    @registry.task("acl:job", queue="acl")
    async def job(ctx: TaskContext, payload: Any) -> str:
        return f"done {payload['n']}"

    client = Client(worker_url)
    worker = Worker(registry, worker_url, WorkerOptions(queues=["acl"], concurrency=2, poll_interval_s=0.1))
    running = asyncio.create_task(worker.run())
    try:
        yield client, worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
        client.close()


async def completed(client: Client, tasks: list[Any]) -> None:
    for _ in range(100):
        if all(getattr(client.get_task(t.id), "state", None) == TaskState.COMPLETED for t in tasks):
            return
        await asyncio.sleep(0.1)


async def test_a_worker_under_an_acl_from_before_hand_off_serves_without_it(
    clean: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async with acl_job_worker(url(clean, "rediq-worker-old")) as (client, worker):
        await asyncio.sleep(1.0)  # idle: it would register for hand-offs if it could
        tasks = [client.enqueue("acl:job", {"n": n}, queue="acl") for n in range(3)]
        assert {t.state for t in tasks} == {"pending"}  # nobody registered
        await completed(client, tasks)
        assert [client.get_task(t.id).result for t in tasks] == ["done 0", "done 1", "done 2"]  # type: ignore[union-attr]
        assert worker.handed_off == 0 and not worker.handoff_enabled
        assert "hand-off off" in caplog.text


async def test_a_worker_under_an_acl_without_blmove_pops_hand_offs_then_starts_them(
    clean: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async with acl_job_worker(url(clean, "rediq-worker-pretake")) as (client, worker):
        handed = []
        for n in range(100):  # idle: it registers, its take is refused, it pops instead
            task = client.enqueue("acl:job", {"n": n}, queue="acl")
            handed += [task] if task.state == "active" else []
            if len(handed) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(handed) == 2, "the worker never took two hand-offs"
        await completed(client, handed)
        assert [getattr(client.get_task(t.id), "attempts", None) for t in handed] == [1, 1]
        assert worker.handoff_enabled and not worker.core.take_enabled
        assert "hand-off takes off" in caplog.text


def test_worker_user_cannot_run_lua_of_its_own_or_dangerous_commands(clean: ServerProcess) -> None:
    r = redis.Redis.from_url(url(clean, "rediq-worker"))
    lib = lua.library()
    for command in (
        ("EVAL", "return 1", 0),
        ("EVAL_RO", "return 1", 0),
        ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0),
        ("SCRIPT", "LOAD", "while true do end"),
        ("SCRIPT", "FLUSH"),
        (
            "FUNCTION",
            "LOAD",
            "#!lua name=evil\nredis.register_function('evil', function() while true do end end)",
        ),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DELETE", lib.name),
        ("FUNCTION", "LIST"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "requirepass"),
        ("KEYS", "*"),
        ("SCAN", 0),
        ("ACL", "LIST"),
        ("SHUTDOWN",),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.execute_command(*command)
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.set("not-rediq:key", "1")  # keys outside the prefix
    with pytest.raises(redis.exceptions.NoPermissionError):  # ... also through rediq's functions
        r.fcall(lib.function("pause"), 1, "not-rediq:{q}:paused", "not-rediq:{q}:", "", "1")
    assert r.fcall_ro(lib.function("version"), 0) == lib.name.encode()  # the version check
    r.close()


def test_a_missing_library_is_one_line_naming_the_fix_and_the_admin_installs_it(
    clean: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_url = f"redis://127.0.0.1:{clean.port}/0"  # the open default user: may FUNCTION LOAD
    raw = redis.Redis(port=clean.port)
    raw.function_flush()
    worker_url = url(clean, "rediq-worker")
    with Client(worker_url) as client, pytest.raises(FunctionsMissing) as caught:
        client.enqueue("acl:job", None, queue="acl")
    message = str(caught.value)
    assert message.startswith("E010: ") and "\n" not in message
    assert lua.library().name in message and "rediq server install-functions" in message
    # a worker refuses to start, with the same line and E010's exit code
    worker = Worker(Registry(), worker_url, WorkerOptions(queues=["acl"], poll_interval_s=0.1))
    assert worker.run_forever() == FunctionsMissing.exit_code
    # the CLI: the worker user cannot install it; the admin can, once; then it is there
    capsys.readouterr()
    assert run(cli, ["--redis-url", worker_url, "server", "install-functions"], "rediq") == 9
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "E010: " in err and "install-functions" in err
    assert run(cli, ["--redis-url", worker_url, "server", "install-functions", "--check"], "rediq") == 1
    assert "MISSING" in capsys.readouterr().out
    assert run(cli, ["--redis-url", admin_url, "server", "install-functions"], "rediq") == 0
    assert capsys.readouterr().out.strip() == f"{lua.library().name} loaded on server"
    assert run(cli, ["--redis-url", worker_url, "server", "install-functions", "--check"], "rediq") == 0
    assert capsys.readouterr().out.strip() == f"{lua.library().name} present on server"
    with Client(worker_url) as client:
        assert client.enqueue("acl:job", None, queue="acl").status == "new"
    raw.close()


async def test_worker_user_serves_hand_off_cron_dependencies_and_durable_enqueue(
    clean: ServerProcess,
) -> None:
    worker_url = url(clean, "rediq-worker")
    registry = Registry()

    @registry.task("acl:job", queue="acl")
    async def job(ctx: TaskContext, payload: Any) -> str:
        return f"done {payload['n']}"

    client = Client(worker_url)
    worker = Worker(registry, worker_url, WorkerOptions(queues=["acl"], concurrency=2, poll_interval_s=0.1))
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):  # idle with slots to spare: it registers for hand-offs
            handed = client.enqueue("acl:job", {"n": 0}, queue="acl")
            if handed.state == "active":
                break
            await asyncio.sleep(0.1)
        assert handed.state == "active", "the worker never took a hand-off"
        durable = client.enqueue("acl:job", {"n": 1}, queue="acl", durable=True)  # WAIT 1
        child = client.enqueue("acl:job", {"n": 2}, queue="acl", depends_on=[durable])
        # cron: an entry whose last fire is long past fires on the next tick
        entry = CronDef("acl-cron", "* * * * *", "acl:job", {"n": 3}, "UTC", "acl")
        client.run(scheduler.register(client.settings, entry))
        client.run(_fired_long_ago(client, "acl-cron"))
        (fired,) = client.run(scheduler.tick_op(client.settings, [entry], {}))
        manual = client.call(admin.run_cron_now, "acl-cron")
        expected = {
            handed.id: "done 0",
            durable.id: "done 1",
            child.id: "done 2",
            fired: "done 3",
            manual: "done 3",
        }
        for _ in range(200):
            infos = {tid: client.get_task(tid, "acl") for tid in expected}
            if all(i is not None and i.state == TaskState.COMPLETED for i in infos.values()):
                break
            await asyncio.sleep(0.1)
        assert {tid: getattr(i, "result", None) for tid, i in infos.items()} == expected
        assert worker.handed_off >= 1 and not running.done()
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
    client.close()


def _fired_long_ago(client: Client, name: str) -> Any:
    """The cron entry's state as after a fire long ago (the worker user may HSET it)."""
    yield cmd("HSET", client.settings.keyspace.cron_state, name, '{"last_fire_ms": 0}')


def test_the_acl_files_load_verbatim_as_an_aclfile_and_as_acl_setuser(tmp_path: Any) -> None:
    """Each file is appended to an aclfile as it is (the server used to refuse to start on its
    comment lines), and its rules replayed with ACL SETUSER give the same users."""
    names = sorted(p.name for p in ACL_DIR.glob("*.acl"))
    assert names == ["console-readonly.acl", "worker.acl"]
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(
        "user default on nopass ~* &* +@all\n" + "".join((ACL_DIR / n).read_text() for n in names)
    )
    from_file = ServerProcess(port=free_port(), extra_args=["--aclfile", str(aclfile)]).start()
    replayed = ServerProcess(port=free_port()).start()
    try:
        r = redis.Redis(port=replayed.port, decode_responses=True)
        for name in names:
            assert r.execute_command("ACL", "SETUSER", *acl_setuser_args(acl_file(name))) == "OK"
        f = redis.Redis(port=from_file.port, decode_responses=True)
        users = ("rediq-worker", "rediq-console")
        listed = {
            u: line
            for u in users
            for line in f.execute_command("ACL", "LIST")
            if line.startswith(f"user {u} ")
        }
        replayed_list = {
            u: line
            for u in users
            for line in r.execute_command("ACL", "LIST")
            if line.startswith(f"user {u} ")
        }
        assert set(listed) == set(users) and listed == replayed_list
        for server in (from_file, replayed):  # the verbatim password works
            c = redis.Redis(port=server.port, username="rediq-worker", password="CHANGE_ME")
            assert c.ping() and c.execute_command("WAIT", 0, 10) == 0
            c.close()
        f.close()
        r.close()
    finally:
        from_file.cleanup()
        replayed.cleanup()


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
    lib = lua.library()
    assert raw.fcall_ro(lib.function("version"), 0) == lib.name.encode()  # the version check
    for command in (
        ("SCAN", 0),
        ("KEYS", "*"),
        ("HSET", "rediq:{ro}:t:x", "a", "1"),
        ("FCALL", lib.function("pause"), 1, "rediq:{ro}:paused", "rediq:{ro}:", "", "1"),
        ("EVAL", "return 1", 0),
        ("SCRIPT", "LOAD", "return 1"),
        ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() return 1 end)"),
    ):
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
