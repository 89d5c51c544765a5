"""enqueue.lua: a new task is stored pending (at its priority, in order), scheduled (a delay)
or waiting (dependencies); an id already stored answers 'exists' and changes nothing; a unique
key held by a live task answers 'duplicate' with the holder; a new pending task goes straight
to a worker registered for hand-offs, reserved in its inbox (delivery 1), unless the queue is
paused, the registration lapsed, or a pending task runs before it."""

from __future__ import annotations

import time
from typing import Any

from engine import ops
from engine.backend import Batch, Call
from engine.declarations import Declarations
from engine.task import Task
from tests.lua.harness import ABSENT, RECENT, SETTINGS, TTL, Case, H, Json, Later, Parts, Z, cases, run_case

SHIFT = 2**40
LEASE_MS = 30_000
STORED = {
    "id": "a",
    "type": "t",
    "payload": '{"n":1}',
    "priority": "50",
    "max_retry": "3",
    "timeout": "60000",
    "enq": RECENT,
    "attempts": "0",
    "v": "1",
    "dlv": ABSENT,
    "worker": ABSENT,
}
TAKER = {"idle": H({"w1": f"2:{10**15}:{LEASE_MS}"})}
"""A worker registered for hand-offs: two free slots, a deadline far ahead, its lease."""


def handed(task_id: str, priority: str = "50") -> Json:
    """The inbox record of a handed-off task: a dequeue reply's fields, reserved, token w1#1."""
    return Json([task_id, "t", '{"n":1}', priority, "3", "60000", 0, "", "1", "1", "w1#1"])


def enqueue_call(tasks: list[Task]) -> Call:
    """The script call ``enqueue_many`` sends for one queue (its batch also registers the queue
    name; declarations are taken as read, with nothing declared)."""
    declarations = Declarations(version="", checked_at=time.monotonic(), miss_refresh_s=float("inf"))
    op = ops.enqueue_many(SETTINGS, tasks, declarations)
    request = next(op)
    op.close()
    assert isinstance(request, Batch), request
    (call,) = [c for c in request.calls if c.script]
    return call


def task(task_id: str = "a", **options: Any) -> Task:
    return Task(type="t", queue="q", id=task_id, payload={"n": 1}, max_retry=3, timeout=60, **options)


TABLE = cases(
    Case(
        "new: pending at its priority, the queue's sequence counted",
        before={},
        keys={"seq": "6"},
        reply=["new", "a", "pending"],
        after={"a": {**STORED, "state": "pending", "seq": "7", "due": RECENT, "entered": "pending"}},
        scores_after={("pending", "a"): 50 * SHIFT + 7},
        # the 'enqueued' history entry is implied by 'enq' and 'entered', not pushed
        keys_after={"seq": "7", "h:a": ABSENT},
    ),
    Case(
        "fair queue: the score's low part is the group's tag, max(last, clock) + 1024 / weight",
        before={},
        args={"tasks": [task(group="g")]},
        keys={"seq": "6", "fair": H({"on": "1", "clock": "5000", "t:g": "9000", "w:g": "2"})},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "seq": "7", "grp": "g"}},
        scores_after={("pending", "a"): 50 * SHIFT + 9512},
        keys_after={"fair": H({"on": "1", "clock": "5000", "t:g": "9512", "w:g": "2"})},
    ),
    Case(
        "fair queue, a newcomer (no tag; no group: group ''): at the clock, no hand-off",
        before={},
        keys={**TAKER, "seq": "6", "fair": H({"on": "1", "clock": "5000", "t:big": "99000"})},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "worker": ABSENT}},
        scores_after={("pending", "a"): 50 * SHIFT + 6024},
        keys_after={"fair": H({"on": "1", "clock": "5000", "t:big": "99000", "t:": "6024"})},
    ),
    Case(
        "fair queue turned on: the clock starts at the sequence (behind tasks queued before)",
        before={},
        keys={"seq": "6", "fair": H({"on": "1"})},
        reply=["new", "a", "pending"],
        scores_after={("pending", "a"): 50 * SHIFT + 7 + 1024},
        keys_after={"fair": H({"on": "1", "clock": "7", "t:": "1031"})},
    ),
    Case(
        "priority 5: ahead of priority 50",
        before={},
        args={"tasks": [task(priority=5)]},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "priority": "5", "entered": "pending"}},
        scores_after={("pending", "a"): 5 * SHIFT + 1},
    ),
    Case(
        "a delay: scheduled, due then",
        before={},
        args={"tasks": [task(delay=60)]},
        reply=["new", "a", "scheduled"],
        after={"a": {**STORED, "state": "scheduled", "due": Later(60_000), "entered": "scheduled"}},
        scores_after={("scheduled", "a"): Later(60_000)},
    ),
    Case(
        "dependencies: waiting, its dependency set and policy stored",
        before={},
        args={"tasks": [task(depends_on=("q|x",), dependency_failure="hold")]},
        reply=["new", "a", "waiting"],
        after={"a": {"state": "waiting", "deps": '["q|x"]', "dpol": "hold", "entered": "waiting"}},
        keys_after={"deps:a": {"q|x"}},
    ),
    Case(
        "dependencies and a delay: waiting (the dependencies decide)",
        before={},
        args={"tasks": [task(depends_on=("q|x",), delay=60)]},
        reply=["new", "a", "waiting"],
        after={"a": {"state": "waiting", "dpol": "cancel"}},
    ),
    Case(
        "metadata and keep_result are stored",
        before={},
        args={"tasks": [task(metadata={"k": "v"}, keep_result=5)]},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "meta": '{"k": "v"}', "keep": "5000"}},
    ),
    *[
        Case(
            f"the id is stored already ({state}): 'exists', unchanged",
            before={"a": {"state": state, "type": "old", "attempts": "2"}},
            reply=["exists", "a", state],
            after={"a": {"state": state, "type": "old", "attempts": "2", "enq": ABSENT, "entered": ABSENT}},
            keys_after={"seq": ABSENT},
        )
        for state in ("pending", "active", "completed", "dead")
    ],
    Case(
        "unique key free: taken, with its TTL",
        before={},
        args={"tasks": [task(unique_key="u", unique_ttl=60)]},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "unique": "u"}},
        keys_after={"unique:u": "a"},
    ),
    *[
        Case(
            f"unique key held by a {state} task: 'duplicate', its id and state",
            before={"b": {"state": state}},
            keys={"unique:u": "b"},
            args={"tasks": [task(unique_key="u")]},
            reply=["duplicate", "b", state],
            after={"a": None},
            keys_after={"unique:u": "b", "seq": ABSENT},
        )
        for state in ("pending", "scheduled", "waiting", "active", "retry")
    ],
    *[
        Case(
            f"unique key left by a {state} task: taken over",
            before={"b": {"state": state}},
            keys={"unique:u": "b"},
            args={"tasks": [task(unique_key="u")]},
            reply=["new", "a", "pending"],
            after={"a": {"state": "pending", "unique": "u"}},
            keys_after={"unique:u": "a"},
        )
        for state in ("completed", "dead", "cancelled")
    ],
    Case(
        "unique key left by a task whose hash expired: taken over",
        before={},
        keys={"unique:u": "gone"},
        args={"tasks": [task(unique_key="u")]},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending"}},
        keys_after={"unique:u": "a"},
    ),
    Case(
        "a batch: one answer per task, in order, the sequence counted on",
        before={"b": {"state": "dead"}},
        args={"tasks": [task("a"), task("b"), task("c", delay=60)]},
        reply=["new", "a", "pending", "exists", "b", "dead", "new", "c", "scheduled"],
        after={"a": {"state": "pending", "seq": "1"}, "c": {"state": "scheduled", "seq": "2"}},
        # the first new task reserved a number for each of the three; b's is not used
        keys_after={"seq": "3"},
    ),
    Case(
        "a batch whose first tasks exist: numbers reserved from the first new one on",
        before={"a": {"state": "dead"}},
        keys={"seq": "10"},
        args={"tasks": [task("a"), task("b"), task("c")]},
        reply=["exists", "a", "dead", "new", "b", "pending", "new", "c", "pending"],
        after={"b": {"state": "pending", "seq": "11"}, "c": {"state": "pending", "seq": "12"}},
        scores_after={("pending", "b"): 50 * SHIFT + 11, ("pending", "c"): 50 * SHIFT + 12},
        keys_after={"seq": "12"},
    ),
    # ------------------------------------------------------------------------- hand-off
    Case(
        "a worker waits for hand-offs: handed to it, reserved, delivery 1, no sequence number",
        before={},
        keys={**TAKER, "seq": "6"},
        reply=["new", "a", "active"],
        after={
            "a": {
                **STORED,
                "state": "active",
                "reserved": "1",
                "worker": "w1",
                "dlv": "1",
                "lease": Later(LEASE_MS),
                "entered": "pending",
                # the number only orders the pending set, and nothing there runs before it
                "seq": ABSENT,
            }
        },
        scores_after={("active", "a"): Later(LEASE_MS)},
        keys_after={
            "inbox:w1": [handed("a")],
            "idle": H({"w1": Parts((1, 10**15, LEASE_MS))}),
            "h:a": ABSENT,
            "seq": "6",
        },
    ),
    Case(
        "its last free slot taken: the registration goes",
        before={},
        keys={"idle": H({"w1": f"1:{10**15}:{LEASE_MS}"})},
        reply=["new", "a", "active"],
        after={"a": {"state": "active", "worker": "w1"}},
        keys_after={"idle": ABSENT, "inbox:w1": TTL(True, LEASE_MS)},
    ),
    Case(
        "more tasks than free slots: the rest are pending",
        before={},
        keys=TAKER,
        args={"tasks": [task("a"), task("b"), task("c")]},
        reply=["new", "a", "active", "new", "b", "active", "new", "c", "pending"],
        after={
            "a": {"state": "active", "worker": "w1", "seq": ABSENT},
            "b": {"state": "active", "worker": "w1", "seq": ABSENT},
            "c": {"state": "pending", "worker": ABSENT, "seq": "1"},
        },
        scores_after={("pending", "c"): 50 * SHIFT + 1},
        keys_after={"inbox:w1": [handed("a"), handed("b")], "idle": ABSENT, "seq": "1"},
    ),
    Case(
        "a lapsed registration: not handed, the registration dropped",
        before={},
        keys={"idle": H({"w1": f"2:1000:{LEASE_MS}"})},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "worker": ABSENT}},
        keys_after={"idle": ABSENT, "inbox:w1": ABSENT},
    ),
    Case(
        "paused: not handed",
        before={},
        keys={**TAKER, "paused": "1"},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "worker": ABSENT}},
        keys_after={"inbox:w1": ABSENT},
    ),
    Case(
        "a pending task runs before it (a higher priority): not handed, no jumping the queue",
        before={"p": {"state": "pending"}},
        places={"p": ()},
        keys={**TAKER, "pending": Z({"p": 10 * SHIFT})},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "worker": ABSENT}},
        keys_after={"inbox:w1": ABSENT},
    ),
    Case(
        "a pending task runs after it: handed",
        before={"p": {"state": "pending"}},
        places={"p": ()},
        keys={**TAKER, "pending": Z({"p": 90 * SHIFT}), "seq": "6"},
        reply=["new", "a", "active"],
        # (numbered: with a task pending, its place was compared)
        after={"a": {"state": "active", "worker": "w1", "seq": "7"}},
        keys_after={"seq": "7"},
    ),
    Case(
        "a fair queue with a waiting worker: not handed (a fair queue's order is its tags)",
        before={},
        keys={**TAKER, "fair": H({"on": "1", "clock": "5000"})},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "worker": ABSENT}},
        keys_after={"inbox:w1": ABSENT},
    ),
    Case(
        "a queue no longer fair (its hash kept, 'on' 0) with a waiting worker: handed",
        before={},
        keys={**TAKER, "fair": H({"on": "0", "clock": "5000"})},
        reply=["new", "a", "active"],
        after={"a": {"state": "active", "worker": "w1"}},
        keys_after={"inbox:w1": [handed("a")]},
    ),
    Case(
        "a grouped task of the same batch went pending first: the next one is not handed ahead of it",
        before={},
        keys=TAKER,
        args={"tasks": [task("g", group="customer:42"), task("a")]},
        reply=["new", "g", "pending", "new", "a", "pending"],
        after={"g": {"state": "pending", "worker": ABSENT}, "a": {"state": "pending", "worker": ABSENT}},
        keys_after={"inbox:w1": ABSENT},
    ),
    Case(
        "scheduled and waiting tasks are never handed",
        before={},
        keys=TAKER,
        args={"tasks": [task("a", delay=60), task("b", depends_on=("q|x",))]},
        reply=["new", "a", "scheduled", "new", "b", "waiting"],
        after={"a": {"state": "scheduled", "worker": ABSENT}, "b": {"state": "waiting", "worker": ABSENT}},
        keys_after={"inbox:w1": ABSENT, "idle": H({"w1": f"2:{10**15}:{LEASE_MS}"})},
    ),
    Case(
        "a task of a concurrency group: stored with its group, never handed (dequeue checks the group)",
        before={},
        keys=TAKER,
        args={"tasks": [task("a", group="customer:42")]},
        reply=["new", "a", "pending"],
        after={"a": {"state": "pending", "worker": ABSENT, "grp": "customer:42"}},
        keys_after={"inbox:w1": ABSENT, "idle": H({"w1": f"2:{10**15}:{LEASE_MS}"})},
    ),
)


@TABLE
def test_enqueue(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, enqueue_call(case.args.get("tasks", [task()])))


def test_a_batch_reads_whether_its_queue_is_fair_once_not_once_per_task(redis_url: str) -> None:
    """Most queues are not fair: a batch of 50 pending tasks reads the fair hash once (was 50
    times; issue 20's footprint). Counted by Valkey's own per-command statistics, which count
    the commands scripts run."""
    import redis

    from engine.backend import SyncBackend

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        r.config_resetstat()
        reply = backend.execute(enqueue_call([task(f"t{n}") for n in range(50)]))
        assert reply[2::3] == ["pending"] * 50
        stats = r.info("commandstats")
        reads = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("hget", "hmget"))
        assert reads == 1, stats
    finally:
        backend.close()
        r.close()


def test_a_hand_off_reads_the_queue_with_one_exists(redis_url: str) -> None:
    """On the way from an enqueue to a waiting worker's start (issue 20 point 3): a queue that is
    not paused, not fair and has nothing pending is known to be so by one EXISTS of its three
    keys, not by a read of each (HGET of the fair hash, EXISTS of the pause key, ZRANGE of the
    pending set). Counted by Valkey, which counts the commands scripts run."""
    import redis

    from engine.backend import SyncBackend

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        r.hset(SETTINGS.keyspace.queue("q").idle, "w1", f"2:{10**15}:{LEASE_MS}")
        r.config_resetstat()
        assert backend.execute(enqueue_call([task("a")])) == ["new", "a", "active"]
        stats = r.info("commandstats")
        calls = {c: stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("hget", "zrange", "exists")}
        assert calls == {"hget": 0, "zrange": 0, "exists": 2}, stats  # the task's own EXISTS and one
    finally:
        backend.close()
        r.close()
