"""What one enqueue costs Redis: a client sends its queue registration (``SADD`` of the queue
registry) once per refresh interval, not with every call, so a single enqueue is one command;
a queue forgotten from the registry comes back at the next refresh. Counted by the server
(``INFO commandstats``), on real Valkey."""

from __future__ import annotations

import time
from typing import Any

import redis

from engine import ops
from engine.backend import Batch
from engine.client import Client
from engine.declarations import Declarations
from engine.ops import QueueRegistrations, Settings
from engine.task import Task


def calls(raw: redis.Redis, name: str) -> int:
    stats: dict[str, Any] = raw.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


def test_single_enqueues_send_the_registration_once(redis_url: str, raw: redis.Redis) -> None:
    client = Client(redis_url)
    try:
        client.enqueue("t", {"n": 0}, queue="q")  # the first one registers the queue
        sadd, fcall = calls(raw, "sadd"), calls(raw, "fcall") + calls(raw, "evalsha")
        for n in range(1, 6):
            client.enqueue("t", {"n": n}, queue="q")
        assert calls(raw, "sadd") == sadd  # no SADD with the later ones
        assert calls(raw, "fcall") + calls(raw, "evalsha") == fcall + 5  # one script call each
        assert raw.smembers("rediq:queues") == {"q"}
        assert raw.zcard("rediq:{q}:pending") == 6
    finally:
        client.close()


def test_a_forgotten_queue_is_registered_again_after_the_refresh(redis_url: str, raw: redis.Redis) -> None:
    client = Client(redis_url)
    client.registrations.refresh_s = 0.2
    try:
        client.enqueue("t", {}, queue="q")
        raw.delete("rediq:queues")  # an operator forgot the queue (or the registry's node failed over)
        deadline = time.monotonic() + 10
        while not raw.sismember("rediq:queues", "q"):
            assert time.monotonic() < deadline, "the queue was never registered again"
            client.enqueue("t", {}, queue="q")
            time.sleep(0.05)
    finally:
        client.close()


def _first_batch(registrations: QueueRegistrations | None, queues: list[str]) -> Batch:
    declarations = Declarations(version="", checked_at=time.monotonic(), miss_refresh_s=float("inf"))
    tasks = [Task(type="t", queue=q, payload={}) for q in queues]
    op = ops.enqueue_many(Settings(), tasks, declarations, registrations=registrations)
    request = next(op)
    op.close()
    assert isinstance(request, Batch)
    return request


def test_registration_is_due_per_queue_and_only_marked_when_it_succeeded() -> None:
    registrations = QueueRegistrations(refresh_s=3600)
    first = _first_batch(registrations, ["a", "b"])
    assert first.calls[0].command == ("SADD", "rediq:queues", "a", "b")
    assert registrations.due(["a", "b"]) == ["a", "b"]  # not marked before a reply
    registrations.done(["a"])
    later = _first_batch(registrations, ["a", "b"])
    assert later.calls[0].command == ("SADD", "rediq:queues", "b")
    registrations.done(["b"])
    alone = _first_batch(registrations, ["a", "b"])
    assert [c.script for c in alone.calls] == ["enqueue", "enqueue"]  # no SADD at all
    # without a client's record (a cron tick, a script): registered with every call, as before
    assert _first_batch(None, ["a"]).calls[0].command == ("SADD", "rediq:queues", "a")


def test_a_failed_registration_is_sent_again() -> None:
    registrations = QueueRegistrations(refresh_s=3600)
    declarations = Declarations(version="", checked_at=time.monotonic(), miss_refresh_s=float("inf"))
    op = ops.enqueue_many(
        Settings(), [Task(type="t", queue="a", payload={})], declarations, registrations=registrations
    )
    next(op)
    try:
        op.send([None, ["new", "x", "pending"]])  # best effort: the SADD failed, read as None
    except StopIteration:
        pass
    assert registrations.due(["a"]) == ["a"]
