"""beat.lua: a worker's registry entry refreshed with only the fields that changed since its
last beat, or whole when the entry is gone (expired while the worker stalled, lost)."""

from __future__ import annotations

import redis

from engine.backend import SyncBackend
from engine.worker import protocol
from tests.lua.harness import SETTINGS

WORKER = "host:1:abc"
FIELDS = {"host": "host", "pid": 1, "queues": "q", "busy": 0, "tasks": "[]"}


def _beat(url: str, fields: dict[str, object], written: dict[str, str] | None) -> int:
    backend = SyncBackend(redis.Redis.from_url(url, decode_responses=True))
    try:
        return backend.run(protocol.beat_registry(SETTINGS, WORKER, fields, 60_000, written))
    finally:
        backend.close()


def test_only_the_changed_fields_are_written_while_the_entry_is_there(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    key = SETTINGS.keyspace.worker(WORKER)
    first = _beat(redis_url, FIELDS, None)
    assert r.hgetall(key) == {**{k: str(v) for k, v in FIELDS.items()}, "heartbeat": str(first)}
    r.hset(key, "host", "marker")  # a field the next beat does not name as changed stays as it is
    second = _beat(redis_url, {**FIELDS, "busy": 1}, {k: str(v) for k, v in FIELDS.items()})
    entry = r.hgetall(key)
    assert entry["host"] == "marker" and entry["busy"] == "1" and entry["heartbeat"] == str(second)
    assert 0 < r.pttl(key) <= 60_000
    assert r.zscore(SETTINGS.keyspace.workers, WORKER) == second


def test_an_entry_that_is_gone_is_written_whole(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    key = SETTINGS.keyspace.worker(WORKER)
    _beat(redis_url, FIELDS, None)
    r.delete(key)  # expired while the worker stalled
    now = _beat(redis_url, FIELDS, {k: str(v) for k, v in FIELDS.items()})
    assert r.hgetall(key) == {**{k: str(v) for k, v in FIELDS.items()}, "heartbeat": str(now)}
