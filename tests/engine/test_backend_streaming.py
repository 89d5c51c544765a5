"""A large ``enqueue_many`` goes out as a streamed batch: several enqueue script calls of
``ENQUEUE_CHUNK`` tasks, each written while Redis runs the one before. The answer must be the
same as one big call: order kept across chunks and queues, unique keys seen across chunks,
scripts reloaded after a flush, and a connection broken mid-stream re-sent without a second
task."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from engine import backend
from engine.client import AsyncClient, Client
from engine.ops import ENQUEUE_CHUNK
from engine.task import Task

N = ENQUEUE_CHUNK * 3 + 17  # four chunks in one queue


def _evalsha_calls(r: redis.Redis) -> int:
    """Script calls, as FCALL (functions mode, the default) or EVALSHA."""
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "fcall", "fcall_ro"))


def test_a_large_batch_runs_in_chunks_and_answers_in_order(client: Client, raw: redis.Redis) -> None:
    tasks = [Task(type="t", queue=("a", "b")[i % 2], payload=i) for i in range(2 * N)]
    client.enqueue("t", None, queue="warm")  # the script is loaded: no NOSCRIPT round below
    raw.config_resetstat()
    results = client.enqueue_many(tasks)
    assert [r.id for r in results] == [t.id for t in tasks]
    assert [r.queue for r in results] == [t.queue for t in tasks]
    assert all(r.status == "new" and r.state == "pending" for r in results)
    chunks_per_queue = -(-N // ENQUEUE_CHUNK)
    assert _evalsha_calls(raw) == 2 * chunks_per_queue
    assert raw.zcard("rediq:{a}:pending") == raw.zcard("rediq:{b}:pending") == N
    # FIFO across chunk boundaries: the queue's sequence continues from chunk to chunk
    first_of_second_chunk = tasks[2 * ENQUEUE_CHUNK + 1]  # the 251st task of queue b
    assert raw.hget(f"rediq:{{b}}:t:{first_of_second_chunk.id}", "seq") == str(ENQUEUE_CHUNK + 1)


def test_a_unique_key_is_held_across_chunks_of_one_batch(client: Client) -> None:
    tasks = [Task(type="t", queue="u", payload=i) for i in range(N)]
    tasks[3] = Task(type="t", queue="u", unique_key="order-7")
    tasks[-1] = Task(type="t", queue="u", unique_key="order-7")  # in the last chunk
    results = client.enqueue_many(tasks)
    assert results[3].status == "new"
    assert results[-1].status == "duplicate" and results[-1].id == tasks[3].id


def test_a_streamed_batch_reloads_scripts_after_a_flush(client: Client, raw: redis.Redis) -> None:
    client.enqueue("t", None, queue="s")
    raw.script_flush()
    raw.function_flush()
    results = client.enqueue_many([Task(type="t", queue="s", payload=i) for i in range(N)])
    assert all(r.created for r in results)
    assert raw.zcard("rediq:{s}:pending") == N + 1


def test_a_connection_broken_mid_stream_resends_without_a_second_task(
    client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.enqueue("t", None, queue="warm")  # declarations read: the batch below is the only exchange
    real_read = backend._read_reply
    reads = {"n": 0}

    def read_then_break_once(conn: object) -> object:
        reads["n"] += 1
        reply = real_read(conn)
        if reads["n"] == 3:  # the registry's reply and two chunks are in: Redis ran them
            conn.disconnect()  # type: ignore[attr-defined]
            raise RedisConnectionError("connection reset by the test")
        return reply

    monkeypatch.setattr(backend, "_read_reply", read_then_break_once)
    tasks = [Task(type="t", queue="c", payload=i) for i in range(N)]
    results = client.enqueue_many(tasks)
    statuses = [r.status for r in results]
    # the first two chunks ran before the break, the re-sent copies find their tasks stored;
    # the third was on its way (it ran whole or not at all), the fourth was not sent
    assert statuses[: 2 * ENQUEUE_CHUNK] == ["exists"] * (2 * ENQUEUE_CHUNK)
    assert len(set(statuses[2 * ENQUEUE_CHUNK : 3 * ENQUEUE_CHUNK])) == 1
    assert set(statuses[3 * ENQUEUE_CHUNK :]) == {"new"}
    assert raw.zcard("rediq:{c}:pending") == N
    assert int(raw.get("rediq:{c}:seq") or 0) == N  # no task was created twice


async def test_the_async_client_streams_the_same_way(redis_url: str, raw: redis.Redis) -> None:
    client = AsyncClient(redis_url)
    try:
        tasks = [Task(type="t", queue=("a", "b")[i % 3 == 0], payload=i) for i in range(2 * N)]
        raw.config_resetstat()
        results = await client.enqueue_many(tasks)
        assert [r.id for r in results] == [t.id for t in tasks]
        assert all(r.created for r in results)
        assert _evalsha_calls(raw) > 2  # chunked
        assert raw.zcard("rediq:{a}:pending") + raw.zcard("rediq:{b}:pending") == 2 * N
        raw.script_flush()
        raw.function_flush()
        again = await client.enqueue_many(tasks)
        assert {r.status for r in again} == {"exists"}
    finally:
        await client.close()
