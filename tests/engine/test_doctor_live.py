"""``rediq doctor --repair`` on a live queue. Its findings come from a snapshot read over many
round trips; a worker that moves a task in between must not see its lease expired or its task
put back in pending (it would run twice). The races are made deterministic by driving the
doctor's request generator by hand and letting a worker act between two of its requests; a
real worker then serves a queue while the doctor repairs it over and over."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from engine import doctor
from engine.backend import Batch, Call, Op
from engine.client import Client
from engine.registry import Registry
from engine.task import TaskState
from engine.worker import protocol
from tests.engine.conftest import running_worker, wait_until
from tests.engine.invariants import check_invariants

T = Any


def drive(client: Client, op: Op[T], after: Callable[[Call | Batch], None]) -> T:
    """Run ``op`` request by request, calling ``after`` once each reply is in (before the op
    sees it): the place where a worker's move overtakes the doctor's snapshot."""
    try:
        request = next(op)
        while True:
            reply = client.backend.execute(request)
            after(request)
            request = op.send(reply)
    except StopIteration as stop:
        return stop.value


def findings(client: Client, queue: str, repair: bool = False) -> list[doctor.Finding]:
    """The doctor's findings for one queue (other tests leave their own behind on the server)."""
    return [f for f in client.call(doctor.examine, repair=repair) if f.queue == queue]


def lease(client: Client, queue: str, lease_ms: int = 30_000) -> list[protocol.Job]:
    call = protocol.dequeue_call(client.settings, queue, 1, lease_ms, "w-live")
    return protocol.parse_dequeue(queue, client.backend.execute(call))


def once(
    predicate: Callable[[Call | Batch], bool], action: Callable[[], object]
) -> Callable[[Call | Batch], None]:
    fired: list[int] = []

    def after(request: Call | Batch) -> None:
        if not fired and predicate(request):
            fired.append(1)
            action()

    return after


def reads(key: str) -> Callable[[Call | Batch], bool]:
    return lambda r: isinstance(r, Call) and r.command[:2] == ("ZRANGE", key)


def test_a_task_leased_during_the_snapshot_keeps_its_lease(client: Client, raw: redis.Redis) -> None:
    qk = client.settings.keyspace.queue("dl1")
    r = client.enqueue("t", None, queue="dl1")
    jobs: list[protocol.Job] = []
    # the doctor has read the pending set (the task is in it); a worker now leases the task
    after = once(reads(qk.pending), lambda: jobs.extend(lease(client, "dl1")))
    drive(client, doctor.examine(client.settings, repair=True), after)
    (job,) = jobs
    lease_ms = raw.zscore(qk.active, r.id)
    assert lease_ms is not None and lease_ms > 0, "the doctor expired a live lease"
    assert raw.zscore(qk.pending, r.id) is None, "the task is both pending and active"
    assert raw.hget(qk.task(r.id), "lease") == str(int(lease_ms))
    # the worker that holds it completes it: it ran once
    client.backend.execute(protocol.ack_call(client.settings, "dl1", [(job.id, job.token, "")]))
    assert client.get_task(r.id).state == TaskState.COMPLETED  # type: ignore[union-attr]


def test_a_task_enqueued_and_leased_during_the_scan_is_not_put_back_in_pending(
    client: Client, raw: redis.Redis
) -> None:
    qk = client.settings.keyspace.queue("dl2")
    client.enqueue("t", None, queue="dl2", id="first")
    state: dict[str, Any] = {}

    def enqueue_after_snapshot() -> None:  # after the state sets were read: unknown to the doctor
        client.enqueue("t", None, queue="dl2", id="late")

    def lease_after_check() -> None:  # after the doctor read 'late' as pending
        state["jobs"] = lease(client, "dl2") + lease(client, "dl2")

    snapshot_done = once(reads(qk.quarantine), enqueue_after_snapshot)
    hash_read = once(
        lambda r: (
            isinstance(r, Batch)
            and any(c.command[0] in ("HGET", "HMGET") and c.command[1] == qk.task("late") for c in r.calls)
        ),
        lease_after_check,
    )

    def after(request: Call | Batch) -> None:
        snapshot_done(request)
        hash_read(request)

    drive(client, doctor.examine(client.settings, repair=True), after)
    assert sorted(j.id for j in state["jobs"]) == ["first", "late"]
    assert raw.zscore(qk.pending, "late") is None, "the task is both pending and active"
    assert raw.zscore(qk.active, "late") == int(raw.hget(qk.task("late"), "lease") or 0)
    done = [(j.id, j.attempt, "") for j in state["jobs"]]
    client.backend.execute(protocol.ack_call(client.settings, "dl2", done))


def test_repairs_converge_in_one_pass(client: Client, raw: redis.Redis) -> None:
    qk = client.settings.keyspace.queue("dl3")
    for i in range(3):
        client.enqueue("t", None, queue="dl3", id=f"c{i}")
    lease(client, "dl3")  # c0 active with a live lease
    lease(client, "dl3")  # c1 active
    raw.zrem(qk.active, "c0")  # its hash says active, it is in no set, lease still live
    raw.zrem(qk.active, "c1")
    raw.hdel(qk.task("c1"), "lease")  # and one with no lease at all
    raw.zrem(qk.pending, "c2")
    raw.zadd(qk.scheduled, {"c2": 0})  # in the wrong set
    first = findings(client, "dl3", repair=True)
    assert {(f.kind, f.item) for f in first} >= {
        ("hash_without_state", "c0"),
        ("hash_without_state", "c1"),
        ("state_mismatch", "c2"),
    }
    assert findings(client, "dl3", repair=True) == []  # nothing left for a second pass
    assert [p for p in check_invariants(raw) if "dl3/" in p] == []
    assert raw.zscore(qk.active, "c0") == int(raw.hget(qk.task("c0"), "lease") or 0)  # still held
    assert client.get_task("c1").state == TaskState.PENDING  # type: ignore[union-attr]


def test_doctor_resolves_dependents_of_a_vanished_dependency(client: Client, raw: redis.Redis) -> None:
    qk = client.settings.keyspace.queue("dl4")
    parent = client.enqueue("t", None, queue="dl4")
    child = client.enqueue("t", None, queue="dl4", depends_on=[parent.id])
    # the parent expires (retention ran out) without its dependents being told
    raw.delete(qk.task(parent.id), qk.history(parent.id))
    raw.zrem(qk.pending, parent.id)
    found = findings(client, "dl4")
    assert [(f.kind, f.item) for f in found] == [("orphaned_dependent", child.id)]
    findings(client, "dl4", repair=True)
    info = client.get_task(child.id)
    assert info is not None and info.state == TaskState.CANCELLED and "gone" in (info.reason or "")
    assert findings(client, "dl4") == []


async def test_doctor_repairs_while_a_real_worker_serves_the_queue(redis_url: str) -> None:
    calls: Counter[str] = Counter()
    registry = Registry()

    @registry.task("live:t", queue="dlive")
    async def handler(ctx: Any, payload: Any) -> None:
        calls[ctx.id] += 1
        await asyncio.sleep(0.005)

    stop = threading.Event()
    passes: list[list[doctor.Finding]] = []

    def doctor_loop() -> None:
        with Client(redis_url) as c:
            while not stop.is_set():
                passes.append(c.call(doctor.examine, repair=True))

    with Client(redis_url) as client:
        ids = [r.id for r in client.enqueue_many([_task(i) for i in range(300)])]
        thread = threading.Thread(target=doctor_loop)
        thread.start()
        try:
            async with running_worker(registry, redis_url, ["dlive"], concurrency=8, prefetch=4):
                await wait_until(lambda: len(calls) == len(ids) and _all_completed(client, ids), timeout=60)
        finally:
            stop.set()
            thread.join(30)
        assert len(passes) >= 2
        assert [i for i, n in calls.items() if n != 1] == []  # every task ran exactly once
        bad = [
            f
            for p in passes
            for f in p
            if f.queue == "dlive" and f.kind in ("expired_lease", "state_mismatch")
        ]
        assert bad == [], bad
        assert findings(client, "dlive") == []


def _task(i: int) -> Any:
    from engine.client import build_task

    return build_task("live:t", i, queue="dlive")


def _all_completed(client: Client, ids: list[str]) -> bool:
    qk = client.settings.keyspace.queue("dlive")
    return int(client.backend.execute(Call(command=("ZCARD", qk.completed)))) == len(ids)
