"""The hiredis packer the worker installs on its own asyncio client sends the same bytes."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from engine import ops
from engine.backend import _args, use_hiredis_packer
from engine.ops import Settings


def test_hiredis_packer_sends_the_same_bytes_and_errors() -> None:
    settings = Settings()
    client = aioredis.Redis()
    plain = client.connection_pool.make_connection()
    assert use_hiredis_packer(client)
    fast = client.connection_pool.make_connection()
    assert type(fast) is not type(plain)
    commands = [
        _args(ops.ack_call(settings, "q", [("a", 1, ""), ("b", 2, '{"x":"é"}')])),
        _args(ops.dequeue_call(settings, "q", 20, 30_000, "host:1:ab")),
        _args(ops.progress_call(settings, "q", "a", 1, 33.3, "half way é")),
        _args(ops.fail_call(settings, "q", "a", 1, "E: boom", "tb\nline", 1.5)),
        ("SCRIPT LOAD", "return 1"),
        ("CONFIG", "GET", "maxmemory-policy"),
        (b"PING",),
    ]
    for command in commands:
        assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))
    assert b"".join(fast.pack_commands(commands)) == b"".join(plain.pack_commands(commands))
    for bad in (None, True):
        with pytest.raises(DataError):
            fast.pack_command("SET", "k", bad)


def test_hiredis_packer_leaves_other_encodings_alone() -> None:
    client = aioredis.Redis(encoding="latin-1")
    assert not use_hiredis_packer(client)
