"""The fault wire does what the harness relies on, against a real Valkey: a dropped request
never reaches the server, a dropped reply does (the server ran it), a duplicate runs twice,
a held request waits for its release, a frozen wire holds requests and replies, and a killed
one fails every request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.backend import AsyncBackend, Batch, cmd
from engine.connection import parse_url
from engine.errors import ConnectionFailed
from tests.faults.wire import Fault, FaultyRedis, Killed, Wire, label_of


@pytest.fixture
async def wired(redis_url: str) -> AsyncIterator[tuple[AsyncBackend, Wire]]:
    real = parse_url(redis_url).aio()
    wire = Wire("w")
    yield AsyncBackend(FaultyRedis(real, wire)), wire  # type: ignore[arg-type]
    await real.aclose()


async def test_a_dropped_request_never_runs(wired: tuple[AsyncBackend, Wire], raw: redis.Redis) -> None:
    backend, wire = wired
    wire.arm(Fault.DROP_REQUEST, "INCR")
    with pytest.raises(ConnectionFailed):
        await backend.execute(cmd("INCR", "n"))
    assert raw.get("n") is None
    assert await backend.execute(cmd("INCR", "n")) == 1  # the fault is spent


async def test_a_dropped_reply_ran_on_the_server(wired: tuple[AsyncBackend, Wire], raw: redis.Redis) -> None:
    backend, wire = wired
    wire.arm(Fault.DROP_REPLY, "any")
    with pytest.raises(ConnectionFailed):
        await backend.execute(Batch([cmd("INCR", "n"), cmd("INCR", "m")]))
    assert raw.get("n") == "1" and raw.get("m") == "1"


async def test_a_duplicated_batch_runs_every_call_twice(
    wired: tuple[AsyncBackend, Wire], raw: redis.Redis
) -> None:
    backend, wire = wired
    wire.arm(Fault.DUPLICATE, "INCR")
    assert await backend.execute(Batch([cmd("INCR", "n"), cmd("INCR", "m")])) == [2, 2]
    assert raw.get("n") == "2"


async def test_a_held_request_waits_for_its_release(
    wired: tuple[AsyncBackend, Wire], raw: redis.Redis
) -> None:
    backend, wire = wired
    wire.arm(Fault.HOLD, "INCR")
    sent = asyncio.ensure_future(backend.execute(cmd("INCR", "n")))
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert not sent.done() and raw.get("n") is None and wire.in_flight == 0
    assert wire.release_held() == 1
    assert await sent == 1


async def test_a_frozen_wire_holds_requests_until_it_thaws(
    wired: tuple[AsyncBackend, Wire], raw: redis.Redis
) -> None:
    backend, wire = wired
    wire.freeze()
    sent = asyncio.ensure_future(backend.execute(cmd("INCR", "n")))
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert not sent.done() and raw.get("n") is None
    wire.thaw()
    assert await sent == 1


async def test_a_killed_wire_fails_every_request(wired: tuple[AsyncBackend, Wire], raw: redis.Redis) -> None:
    backend, wire = wired
    wire.kill()
    with pytest.raises(ConnectionFailed) as caught:
        await backend.execute(cmd("INCR", "n"))
    cause = caught.value.__cause__
    assert isinstance(cause, Killed) and isinstance(cause, RedisConnectionError)
    assert raw.get("n") is None


def test_script_calls_are_labelled_by_script_name() -> None:
    from engine import lua

    assert label_of(lua.fcall_args("start", ["k"], ["a"])) == "start"
    assert label_of(("EVALSHA", lua.script("ack").sha, 0)) == "ack"
    assert label_of(("blpop", "inbox", 1)) == "BLPOP"
