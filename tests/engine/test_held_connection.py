"""A client keeps one pooled connection checked out between calls (engine.held_connection; the
sync and the asyncio twin): the pool's checkout and release were a third of a single enqueue's
client CPU. What must stay true: replies are never read as another call's, a thread or
coroutine that finds the connection busy is served from the pool, a failure sends the next
call to the pool (which names the current server), and a forked child never writes on its
parent's socket."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from engine.backend import Call
from engine.client import AsyncClient, Client
from engine.errors import ConnectionFailed
from engine.held_connection import HeldConnection
from tests.servers import ServerProcess, free_port


def test_a_single_threaded_client_checks_no_connection_out_per_enqueue(client: Client) -> None:
    client.enqueue("t", "warm", queue="h")  # the first reads declarations, registers the queue
    pool = client.backend.redis.connection_pool
    checkouts = 0
    real_get = pool.get_connection

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        nonlocal checkouts
        checkouts += 1
        return real_get(*args, **kwargs)

    pool.get_connection = counting_get  # type: ignore[method-assign]
    for i in range(20):
        assert client.enqueue("t", i, queue="h").status == "new"
    assert checkouts == 0


def test_replies_left_unread_by_an_interrupted_call_are_never_read_as_the_next_ones(
    client: Client, raw: redis.Redis
) -> None:
    raw.set("k", "fresh")
    held = client.backend._held
    assert held is not None

    def interrupted(conn: Any) -> None:
        conn.send_command("ECHO", "stale")  # written; its reply never read
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        held.run(interrupted)
    assert client.backend.execute(Call(command=("GET", "k"))) in ("fresh", b"fresh")


def test_a_call_made_while_the_held_connection_is_busy_goes_through_the_pool(client: Client) -> None:
    """The same thread re-entering (a hook that enqueues, say) must not wait on itself."""
    held = client.backend._held
    assert held is not None
    inner: list[str] = []

    def busy(conn: Any) -> None:
        inner.append(client.enqueue("t", "inner", queue="h").state)

    held.run(busy)
    assert inner == ["pending"]


def _child_reports(client: Client, parent_conn: Any, out: Any) -> None:
    result = client.enqueue("t", "from the child", queue="h")
    held = client.backend._held
    assert held is not None
    out.put((result.status, held._conn is parent_conn))


def test_a_forked_child_takes_its_own_connection(client: Client, raw: redis.Redis) -> None:
    client.enqueue("t", "warm", queue="h")
    held = client.backend._held
    assert held is not None and held._conn is not None
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_reports, args=(client, held._conn, out))
    child.start()
    status, shared = out.get(timeout=30)
    child.join(30)
    assert (status, shared) == ("new", False)
    assert client.enqueue("t", "parent after", queue="h").status == "new"
    assert raw.zcard("rediq:{h}:pending") == 3


class _FollowingConnection(redis.Connection):
    """Learns its server's address when it connects, as a Sentinel-managed connection does."""

    current: dict[str, int] = {}

    def connect(self) -> None:
        self.port = self.current["port"]
        super().connect()  # type: ignore[no-untyped-call]


def test_after_a_failure_the_next_call_reaches_the_server_the_pool_now_names() -> None:
    """A Sentinel failover: the held connection's server dies and the pool names a new one.
    The next call after the failure must check a connection out of the pool again (which asks
    where to connect), not reconnect the held one to the dead address."""
    first = ServerProcess(port=free_port()).start()
    second = ServerProcess(port=free_port()).start()
    try:
        _FollowingConnection.current["port"] = first.port
        pool = redis.ConnectionPool(
            connection_class=_FollowingConnection,
            host="127.0.0.1",
            port=first.port,
            decode_responses=True,
        )
        client = Client(redis=redis.Redis(connection_pool=pool))
        assert client.enqueue("t", "before", queue="h").status == "new"
        first.stop()
        _FollowingConnection.current["port"] = second.port
        with pytest.raises(ConnectionFailed):
            client.enqueue("t", "during", queue="h")
        assert client.enqueue("t", "after", queue="h").status == "new"
        assert redis.Redis(port=second.port).zcard("rediq:{h}:pending") == 1
        client.close()
    finally:
        first.cleanup()
        second.cleanup()


class _CannedPool:
    """Hands out plain objects: what HeldConnection does with a pool, without a server."""

    def __init__(self) -> None:
        self.out = 0

    def get_connection(self) -> object:
        self.out += 1
        return object()

    def release(self, conn: object) -> None:
        self.out -= 1


def test_a_child_forked_while_a_parent_thread_was_mid_call_can_close_and_call() -> None:
    """The parent thread held the lock as the process forked; no thread of the child ever
    releases it, so ``give_back`` (the client's close) waited in the child for good."""
    held = HeldConnection(_CannedPool())
    inside, leave = threading.Event(), threading.Event()

    def mid_call(conn: Any) -> None:
        inside.set()
        leave.wait(10)

    caller = threading.Thread(target=held.run, args=(mid_call,))
    caller.start()
    assert inside.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: a hang ends it by SIGALRM; nothing of pytest runs here
        code = 3
        try:
            signal.alarm(5)
            held.give_back()
            conn = held.run(lambda conn: conn)
            code = 0 if conn is not None and held._conn is conn else 4
        finally:
            os._exit(code)
    leave.set()
    caller.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 3 or -14: the child hung until its alarm


# ------------------------------------------------------------------ the asyncio twin


def _counting_checkouts(pool: Any) -> list[int]:
    counter = [0]
    real_get = pool.get_connection

    async def counting_get(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await real_get(*args, **kwargs)

    pool.get_connection = counting_get
    return counter


async def test_an_async_client_checks_no_connection_out_per_enqueue(redis_url: str) -> None:
    client = AsyncClient(redis_url)
    try:
        await client.enqueue("t", "warm", queue="ah")
        checkouts = _counting_checkouts(client.backend.redis.connection_pool)
        for i in range(20):
            assert (await client.enqueue("t", i, queue="ah")).status == "new"
        assert checkouts == [0]
    finally:
        await client.close()


async def test_async_replies_left_unread_by_a_cancelled_call_are_never_read_as_the_next_ones(
    redis_url: str, raw: redis.Redis
) -> None:
    raw.set("ak", "fresh")
    client = AsyncClient(redis_url)
    try:
        held = client.backend._held
        assert held is not None
        started = asyncio.Event()

        async def cancelled_mid_call(conn: Any) -> None:
            await conn.send_command("ECHO", "stale")  # written; its reply never read
            started.set()
            await asyncio.sleep(10)

        call = asyncio.ensure_future(held.run(cancelled_mid_call))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert held._conn is None and not held._busy
        assert await client.backend.execute(Call(command=("GET", "ak"))) in ("fresh", b"fresh")
    finally:
        await client.close()


async def test_an_async_call_made_while_the_held_connection_is_busy_goes_through_the_pool(
    redis_url: str,
) -> None:
    """Two coroutines at once (a worker's exchange while its heartbeat awaits a reply): the
    second is served by a pooled connection, and each gets its own reply."""
    client = AsyncClient(redis_url)
    try:
        held = client.backend._held
        assert held is not None
        await client.enqueue("t", "warm", queue="ah")
        checkouts = _counting_checkouts(client.backend.redis.connection_pool)
        inside, leave = asyncio.Event(), asyncio.Event()
        inner: list[str] = []

        async def busy(conn: Any) -> str:
            inside.set()
            await leave.wait()
            await conn.send_command("ECHO", "outer")
            return str(await conn.read_response())

        outer = asyncio.ensure_future(held.run(busy))
        await inside.wait()
        inner.append((await client.enqueue("t", "inner", queue="ah")).state)
        leave.set()
        assert (await outer) in ("outer", "b'outer'")
        assert inner == ["pending"] and checkouts == [1]
    finally:
        await client.close()


class _AsyncFollowingConnection(aioredis.Connection):
    """Learns its server's address when it connects, as a Sentinel-managed connection does."""

    current: dict[str, int] = {}

    async def connect(self) -> None:
        self.port = self.current["port"]
        await super().connect()  # type: ignore[no-untyped-call]


async def test_after_a_failure_the_next_async_call_reaches_the_server_the_pool_now_names() -> None:
    first = ServerProcess(port=free_port()).start()
    second = ServerProcess(port=free_port()).start()
    try:
        _AsyncFollowingConnection.current["port"] = first.port
        pool = aioredis.ConnectionPool(
            connection_class=_AsyncFollowingConnection,
            host="127.0.0.1",
            port=first.port,
            decode_responses=True,
        )
        client = AsyncClient(redis=aioredis.Redis(connection_pool=pool))
        assert (await client.enqueue("t", "before", queue="h")).status == "new"
        first.stop()
        _AsyncFollowingConnection.current["port"] = second.port
        with pytest.raises(ConnectionFailed):
            await client.enqueue("t", "during", queue="h")
        assert (await client.enqueue("t", "after", queue="h")).status == "new"
        assert redis.Redis(port=second.port).zcard("rediq:{h}:pending") == 1
        await client.close()
    finally:
        first.cleanup()
        second.cleanup()
