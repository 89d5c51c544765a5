"""What one enqueue costs Redis: a client sends its queue registration (``SADD`` of the queue
registry) once per refresh interval, not with every call, so a single enqueue is one command;
a queue forgotten from the registry comes back at the next refresh. Counted by the server
(``INFO commandstats``), on real Valkey."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from engine import ops
from engine.backend import Batch, Call
from engine.client import Client
from engine.declarations import Declarations
from engine.errors import InvalidTask
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


# ------------------------------------------------------------------ the short route of one task


def _cached() -> Declarations:
    """Declarations read just now: resolving a task needs no read."""
    return Declarations(version="", checked_at=time.monotonic(), miss_refresh_s=float("inf"))


def test_one_task_goes_as_its_script_call_alone_once_its_queue_is_registered() -> None:
    registrations = QueueRegistrations(refresh_s=3600)
    registrations.done(["q"])
    op = ops.enqueue_one(
        Settings(), Task(type="t", queue="q", payload={}), _cached(), registrations=registrations
    )
    request = next(op)
    assert isinstance(request, Call) and request.script == "enqueue"  # not a batch
    try:
        op.send(["new", "x", "pending"])
        raise AssertionError("the operation asked for more than one call")
    except StopIteration as stop:
        assert stop.value == ops.EnqueueResult("x", "q", "pending", "new")


def test_one_task_takes_the_batch_route_when_it_has_more_to_send() -> None:
    registrations = QueueRegistrations(refresh_s=3600)
    due = ops.enqueue_one(
        Settings(), Task(type="t", queue="q", payload={}), _cached(), registrations=registrations
    )
    batch = next(due)
    assert isinstance(batch, Batch) and batch.calls[0].command == ("SADD", "rediq:queues", "q")
    registrations.done(["q"])
    stale = Declarations()  # never read: the published declarations are read first
    first = next(ops.enqueue_one(Settings(), Task(type="t", queue="q"), stale, registrations=registrations))
    assert isinstance(first, Batch) and first.calls[0].command[:2] == ("GET", "rediq:types:version")


def test_a_hook_that_adds_a_dependency_sends_the_task_the_long_way(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as client:
        parent = client.enqueue("t", {}, queue="q")  # registers the queue: the next one is short
        seen: list[str] = []

        def after_parent(task: Task) -> Task:
            seen.append(task.id)
            return task.model_copy(update={"depends_on": (parent.id,)})

        client.enqueue_hooks.append(after_parent)
        child = client.enqueue("t", {}, queue="q")
    assert child.state == "waiting"  # not 'pending': the dependency was registered
    assert raw.smembers(f"rediq:{{q}}:deps:{child.id}") == {f"q|{parent.id}"}
    assert seen == [child.id]  # the hook ran once, not again on the long route


def test_a_strict_client_refuses_an_undeclared_type_on_the_short_route_too(redis_url: str) -> None:
    with Client(redis_url, strict=True) as client:
        client.registrations.done(["q"])
        client.declarations.version, client.declarations.checked_at = "", time.monotonic()
        assert not client.declarations.needs_refresh({"nobody:strict"})
        with pytest.raises(InvalidTask, match="declared nowhere"):
            client.enqueue("nobody:strict", {}, queue="q")
