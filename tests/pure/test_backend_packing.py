"""The hiredis packers the engine installs on the clients it builds send the same bytes as
redis-py's own packers, raise the same errors, and replace text UTF-8 cannot encode."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import DataError

from engine import ops
from engine.backend import _args, use_hiredis_packer
from engine.client import Client
from engine.connection import parse_url
from engine.lua import ScriptMode
from engine.ops import Settings
from engine.task import Task
from engine.worker import protocol


def _commands() -> list[tuple[Any, ...]]:
    settings = Settings()
    task = Task(type="t", payload={"x": "é"}, queue="q", unique_key="u", metadata={"m": "1"})
    return [
        *(
            _args(call, mode)  # FCALL and EVALSHA alike
            for mode in ScriptMode
            for call in (
                protocol.ack_call(settings, "q", [("a", "w#1", ""), ("b", "w#2", '{"x":"é"}')]),
                protocol.dequeue_call(settings, "q", 20, 30_000, "host:1:ab"),
                protocol.progress_call(settings, "q", "a", "w#1", 33.3, "half way é"),
                protocol.fail_call(settings, "q", "a", "w#1", "E: boom", "tb\nline", 1.5),
            )
        ),
        ("EVALSHA", "0" * 40, 0, *ops.task_args(task, settings, ["q|dep"])),
        ("SCRIPT LOAD", "return 1"),
        ("CONFIG", "GET", "maxmemory-policy"),
        (b"PING",),
    ]


def test_async_packer_sends_the_same_bytes_and_errors() -> None:
    client = aioredis.Redis()
    plain = client.connection_pool.make_connection()
    assert use_hiredis_packer(client)
    fast = client.connection_pool.make_connection()
    assert type(fast) is not type(plain)
    commands = _commands()
    for command in commands:
        assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))
    assert b"".join(fast.pack_commands(commands)) == b"".join(plain.pack_commands(commands))
    for bad in (None, True):
        with pytest.raises(DataError):
            fast.pack_command("SET", "k", bad)


def test_sync_packer_sends_the_same_bytes_and_errors() -> None:
    client = redis.Redis()
    plain = client.connection_pool.make_connection()
    assert use_hiredis_packer(client)
    fast = client.connection_pool.make_connection()
    assert isinstance(fast, redis.Connection) and isinstance(plain, redis.Connection)
    assert type(fast._command_packer) is not type(plain._command_packer)
    commands = _commands()
    for command in commands:
        assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))
    assert b"".join(fast.pack_commands(commands)) == b"".join(plain.pack_commands(commands))
    for bad in (None, True):
        with pytest.raises(DataError):
            fast.pack_command("SET", "k", bad)


def test_clients_the_engine_builds_pack_with_hiredis_and_replace_what_utf8_cannot_encode() -> None:
    target = parse_url("redis://127.0.0.1:1/0")
    sync_connection = Client(target).backend.redis.connection_pool.make_connection()
    async_client = target.aio()
    assert use_hiredis_packer(async_client)
    async_connection = async_client.connection_pool.make_connection()
    lone_surrogate = ("SET", "k", "a\udcffb")
    # redis-py's sync hiredis serializer lets this escape as UnicodeEncodeError; the engine's
    # clients are built with encoding_errors="replace", and now both packers honour it
    expected = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na?b\r\n"
    assert b"".join(sync_connection.pack_command(*lone_surrogate)) == expected
    assert b"".join(async_connection.pack_command(*lone_surrogate)) == expected


def test_hiredis_packer_leaves_other_encodings_alone() -> None:
    assert not use_hiredis_packer(aioredis.Redis(encoding="latin-1"))
    assert not use_hiredis_packer(redis.Redis(encoding="latin-1"))
