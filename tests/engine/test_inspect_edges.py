"""Reads the console and the CLI rely on, at their edges: a worker still registered after its
hash expired is left out (not shown as a blank row); the forecast of a queue that does not
exist is None; ``--json`` output serialises the read models."""

from __future__ import annotations

import json

import redis

from engine import events, inspect
from engine.client import Client


def test_a_registered_worker_whose_hash_expired_is_left_out(client: Client, raw: redis.Redis) -> None:
    ks = client.settings.keyspace
    now = int(raw.time()[0]) * 1000
    raw.zadd(ks.workers, {"w-live": now, "w-expired": now})
    raw.hset(ks.worker("w-live"), mapping={"host": "h", "pid": 7, "queues": "a,b", "heartbeat": now})
    (shown,) = client.call(inspect.workers)
    assert (shown.id, shown.host, shown.pid, shown.queues) == ("w-live", "h", 7, ("a", "b"))


def test_no_workers_registered(client: Client) -> None:
    assert client.call(inspect.workers) == []


def test_the_forecast_of_a_queue_that_does_not_exist_is_none(client: Client) -> None:
    assert client.call(inspect.forecast, "no-such-queue") is None


def test_json_output_serialises_dataclasses_and_pydantic_models(client: Client) -> None:
    client.enqueue("t", None, queue="ij")
    summary = client.call(inspect.queue, "ij")
    event = events.parse(client.settings, "rediq:{ij}:events", '{"v":1,"e":"dead","ids":["a"],"t":5}')
    shown = json.loads(inspect.dump_json({"queue": summary, "event": event}))
    assert shown["queue"]["name"] == "ij" and shown["queue"]["counts"]["pending"] == 1
    assert shown["event"]["event"] == "dead" and shown["event"]["ids"] == ["a"]
