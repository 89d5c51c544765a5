"""A single script call (not a batch) after the server lost rediq's Lua (``FUNCTION FLUSH``,
``SCRIPT FLUSH``, a restart without persistence) loads it again and runs once, in both script
modes and on both backends; an error that is not a missing script is raised as it is."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis

from engine import lua, ops
from engine.backend import AsyncBackend, SyncBackend, script_call
from tests.lua.harness import first_call

SETTINGS = ops.Settings(prefix="reload")
QK = SETTINGS.keyspace.queue("q")


def flush(r: redis.Redis, mode: lua.ScriptMode) -> None:
    if mode is lua.ScriptMode.FUNCTIONS:
        r.function_flush()
    else:
        r.script_flush()


@pytest.mark.parametrize("mode", list(lua.ScriptMode))
def test_a_lone_script_call_reloads_what_the_server_lost(
    redis_url: str, raw: redis.Redis, mode: lua.ScriptMode
) -> None:
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True), script_mode=mode)
    try:
        assert backend.execute(first_call(ops.set_paused(SETTINGS, "q", True))) == 1
        flush(raw, mode)
        assert backend.execute(first_call(ops.set_paused(SETTINGS, "q", False))) == 1  # ran once
        assert not raw.exists(QK.paused)
    finally:
        backend.close()


@pytest.mark.parametrize("mode", list(lua.ScriptMode))
async def test_a_lone_script_call_reloads_what_the_server_lost_async(
    redis_url: str, raw: redis.Redis, mode: lua.ScriptMode
) -> None:
    backend = AsyncBackend(aioredis.Redis.from_url(redis_url, decode_responses=True), script_mode=mode)
    try:
        assert await backend.execute(first_call(ops.set_paused(SETTINGS, "q", True))) == 1
        flush(raw, mode)
        assert await backend.execute(first_call(ops.set_paused(SETTINGS, "q", False))) == 1
        assert not raw.exists(QK.paused)
    finally:
        await backend.close()


@pytest.mark.parametrize("mode", list(lua.ScriptMode))
def test_a_script_error_that_is_not_a_missing_script_is_raised(
    redis_url: str, raw: redis.Redis, mode: lua.ScriptMode
) -> None:
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True), script_mode=mode)
    try:
        raw.sadd(QK.base + "fp:bad", "not a sorted set")
        # doctor_fix 'group' runs ZREM on a plain set: WRONGTYPE, not a reload
        call = script_call("doctor_fix", [QK.base + "fp:bad"], ["group", QK.base, "f", "a"])
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            backend.execute(call)
    finally:
        backend.close()
