"""Explainer, failure groups, doctor, quarantine, audit, attempt timeline, forecast, cron control."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from engine import admin, doctor, explain, inspect, scheduler
from engine.client import Client
from engine.cron import CronDef
from engine.registry import Registry
from engine.retry import Fixed
from engine.task import Task, TaskState
from engine.worker import TaskContext, protocol
from tests.engine.conftest import running_worker, wait_until
from tests.engine.invariants import check_invariants


def lease(
    client: Client, queue: str, n: int = 10, lease_ms: int = 30_000, worker: str = "w"
) -> list[protocol.Job]:
    return protocol.parse_dequeue(
        queue, client.backend.execute(protocol.dequeue_call(client.settings, queue, n, lease_ms, worker))
    )


def fail(client: Client, job: protocol.Job, error: str, mode: str = "permanent") -> str:
    return str(
        client.backend.execute(
            protocol.fail_call(client.settings, job.queue, job.id, job.token, error, "", 0, mode)
        )
    )


# ------------------------------------------------------------------------- why not running


def test_why_pending_names_pause_and_missing_workers(client: Client) -> None:
    r = client.enqueue("t", None, queue="why")
    client.enqueue("t", None, queue="why")
    client.call(admin.pause, "why")
    e = client.call(explain.why, r.id)
    assert e.blocked and e.state == TaskState.PENDING
    assert any("queue 'why' is paused" in x for x in e.reasons)
    assert any("no live worker serves queue 'why'" in x for x in e.reasons)
    assert any("position 1 of 2" in x for x in e.reasons)
    client.call(admin.resume, "why")


def test_why_scheduled_retry_and_finished(client: Client) -> None:
    later = client.enqueue("t", None, queue="why", delay=600)
    assert any("becomes due in 10 min" in x for x in client.call(explain.why, later.id).reasons)
    r = client.enqueue("t", None, queue="why2", max_retry=3)
    (job,) = lease(client, "why2")
    client.backend.execute(
        protocol.fail_call(client.settings, "why2", job.id, job.token, "HTTP 503", "", 100, "retry")
    )
    e = client.call(explain.why, r.id)
    assert any("retry after attempt 1 of 4 failed: HTTP 503; due in 100 s" in x for x in e.reasons)
    d = client.enqueue("t", None, queue="why3")
    (job,) = lease(client, "why3")
    fail(client, job, "card expired")
    e = client.call(explain.why, d.id)
    assert not e.blocked and e.reasons == ("not running because it is dead: card expired",)


def test_why_waiting_names_dependencies_and_their_states(client: Client) -> None:
    a = client.enqueue("t", None, queue="dep-a")
    b = client.enqueue("t", None, queue="dep-b", depends_on=[a])
    lease(client, "dep-a")
    e = client.call(explain.why, b.id)
    assert e.reasons[0] == f"waiting on dependencies: dep-a|{a.id} (active)"


def test_why_active_with_dead_worker_says_when_recovery_takes_it(client: Client) -> None:
    r = client.enqueue("t", None, queue="why-act")
    lease(client, "why-act", lease_ms=60_000, worker="host:1:dead")
    e = client.call(explain.why, r.id)
    assert e.blocked and "leased by host:1:dead, which stopped heartbeating" in e.reasons[0]
    assert "lease expires in" in e.reasons[0]
    client.call(admin.purge, "why-act", [r.id])


def test_why_unique_key_held_by_another_task(client: Client, raw: redis.Redis) -> None:
    a = client.enqueue("t", None, queue="uq", unique_key="order-9")
    b = client.enqueue("t", None, queue="uq", id="b-task")
    raw.hset(f"rediq:{{uq}}:t:{b.id}", "unique", "order-9")
    e = client.call(explain.why, b.id)
    assert f"unique key 'order-9' is held by task {a.id}" in e.reasons


async def test_why_all_slots_busy(redis_url: str) -> None:
    registry = Registry()
    gate = asyncio.Event()

    @registry.task("block", queue="busy")
    async def block(ctx: TaskContext, payload: Any) -> None:
        await gate.wait()

    client = Client(redis_url)
    client.enqueue("block", None, queue="busy")
    async with running_worker(registry, redis_url, ["busy"], concurrency=1, prefetch=0, heartbeat_s=0.1):
        await wait_until(lambda: any(w.busy == 1 for w in client.call(inspect.workers)))
        queued = client.enqueue("block", None, queue="busy")
        e = client.call(explain.why, queued.id)
        assert any("all 1 slots of the 1 worker(s) serving 'busy' are busy" in x for x in e.reasons)
        gate.set()
        await wait_until(lambda: (t := client.get_task(queued.id)) is not None and t.state.is_final)


# ------------------------------------------------------------------------- failure groups


def test_failures_group_by_type_and_normalised_error(client: Client) -> None:
    client.enqueue_many([Task(type="order:payment", queue="fg", max_retry=0) for _ in range(5)])
    client.enqueue_many([Task(type="order:sms", queue="fg", max_retry=0) for _ in range(2)])
    for n, job in enumerate(lease(client, "fg", 10)):
        if job.type == "order:payment" and n < 3:
            fail(client, job, f"ConnectionError: 10.0.0.{n}:443 refused after {n + 1}.5 s")
        elif job.type == "order:payment":
            fail(client, job, f"KeyError: 'order-{n}'")
        else:
            fail(client, job, f"ConnectionError: 10.0.0.{n}:443 refused after 2 s")
    groups = client.call(inspect.failure_groups)
    summary = {(g.task_type, g.sample): g.count for g in groups}
    assert summary == {
        ("order:payment", "ConnectionError: <addr> refused after <n> s"): 3,
        ("order:payment", "KeyError: <str>"): 2,
        ("order:sms", "ConnectionError: <addr> refused after <n> s"): 2,
    }
    top = groups[0]
    assert top.count == 3 and top.first_seen_ms <= top.last_seen_ms
    page = client.call(inspect.group_tasks, "fg", top.fingerprint)
    assert page.total == 3 and all(t.type == "order:payment" for t in page.tasks)
    assert client.call(admin.retry_group, "fg", top.fingerprint) == 3
    assert client.call(admin.count, "fg", "pending") == 3
    groups = client.call(inspect.failure_groups)
    assert sorted(g.count for g in groups) == [2, 2]
    sms = next(g for g in groups if g.task_type == "order:sms")
    assert client.call(admin.delete_group, "fg", sms.fingerprint) == 2
    assert client.call(admin.count, "fg", "quarantined") == 2


def test_success_after_retry_leaves_the_group(client: Client) -> None:
    r = client.enqueue("t", None, queue="fg2", max_retry=2)
    (job,) = lease(client, "fg2")
    fail(client, job, "timeout 1", mode="retry")
    assert [g.count for g in client.call(inspect.failure_groups)] == [1]
    (job,) = lease(client, "fg2")
    client.backend.execute(protocol.ack_call(client.settings, "fg2", [(job.id, job.token, "")]))
    assert client.call(inspect.failure_groups) == []
    assert client.get_task(r.id).state == TaskState.COMPLETED  # type: ignore[union-attr]


def test_lease_expiry_deaths_form_their_own_group(client: Client) -> None:
    client.enqueue("crashy", None, queue="fg3", max_retry=0)
    lease(client, "fg3", lease_ms=1)
    time.sleep(0.01)
    lease(client, "fg3")  # recovery buries it
    (group,) = client.call(inspect.failure_groups)
    assert group.task_type == "crashy" and "worker died" in group.sample and group.count == 1


# ------------------------------------------------------------------------- quarantine, audit, bulk


def test_delete_goes_to_quarantine_and_restore_brings_it_back(client: Client) -> None:
    dead = client.enqueue("t", None, queue="qr")
    waiting = client.enqueue("t", None, queue="qr", delay=300)
    (job,) = lease(client, "qr")
    fail(client, job, "boom")
    assert sorted(client.call(admin.delete, "qr", [dead.id, waiting.id])) == sorted([dead.id, waiting.id])
    assert client.get_task(dead.id).state == TaskState.QUARANTINED  # type: ignore[union-attr]
    assert client.call(admin.restore, "qr", [dead.id, waiting.id]) == [dead.id, waiting.id]
    assert client.get_task(dead.id).state == TaskState.DEAD  # type: ignore[union-attr]
    # a delayed task goes back to waiting for its due time, not straight to pending
    assert client.get_task(waiting.id).state == TaskState.SCHEDULED  # type: ignore[union-attr]
    client.call(admin.delete, "qr", [dead.id])
    assert client.call(admin.purge, "qr", [dead.id]) == [dead.id]
    assert client.get_task(dead.id) is None


def test_every_operator_action_is_audited(client: Client) -> None:
    r = client.enqueue("t", None, queue="au")
    client.call(admin.pause, "au")
    client.call(admin.resume, "au")
    client.call(admin.delete, "au", [r.id])
    entries = client.call(inspect.audit)
    assert [e.action for e in entries] == ["delete", "resume", "pause"]
    assert entries[0].queue == "au" and entries[0].count == 1 and r.id in entries[0].detail
    assert "@" in entries[0].actor


# ------------------------------------------------------------------------- doctor


@pytest.mark.no_invariants
def test_doctor_finds_and_repairs_each_corruption_idempotently(client: Client, raw: redis.Redis) -> None:
    ks = client.settings.keyspace
    qk = ks.queue("doc")
    tasks = [client.enqueue("t", None, queue="doc", id=f"t{i}") for i in range(6)]
    done = client.enqueue("t", None, queue="doc", id="done", unique_key="u-done")
    jobs = lease(client, "doc", 1)
    client.backend.execute(protocol.ack_call(client.settings, "doc", [(j.id, j.token, "") for j in jobs]))
    lease(client, "doc", 1, lease_ms=1)  # t1 active with a lease that runs out, nobody polls
    time.sleep(1.1)
    raw.zrem(qk.pending, "t2")  # hash in no state
    raw.delete(qk.task("t3"))  # entry whose hash is gone
    raw.set(qk.unique("u-done"), "t0")  # lock held by a finished task
    raw.zadd(ks.workers, {"ghost:1:abc": 1})  # long-dead worker
    raw.set(qk.stat("p", 1), 5)  # counter without TTL
    raw.set(qk.seq, 1)  # sequence behind
    found = client.call(doctor.examine)
    kinds = sorted({f.kind for f in found})
    assert kinds == [
        "counter_without_ttl",
        "dead_worker",
        "entry_without_hash",
        "expired_lease",
        "hash_without_state",
        "sequence_behind",
        "stale_unique_lock",
    ]
    assert all(not f.repaired for f in found)
    repaired = client.call(doctor.examine, repair=True)
    assert sorted({f.kind for f in repaired}) == kinds and all(f.repaired for f in repaired)
    assert client.call(doctor.examine) == []  # idempotent: nothing left
    assert check_invariants(raw) == []
    assert client.get_task("t2").state == TaskState.PENDING  # type: ignore[union-attr]
    assert client.get_task("t1").state == TaskState.PENDING  # type: ignore[union-attr]
    del tasks, done


# ------------------------------------------------------------------------- attempts, forecast, cron


async def test_attempt_timeline_and_forecast_from_a_real_run(redis_url: str) -> None:
    registry = Registry()

    @registry.task("work", queue="fc", retry=Fixed(0.05, 0))
    async def work(ctx: TaskContext, payload: Any) -> None:
        await asyncio.sleep(0.02)
        if payload == "flaky" and ctx.attempt == 1:
            raise RuntimeError("first try fails")

    client = Client(redis_url)
    flaky = client.enqueue("work", "flaky", queue="fc")
    client.enqueue_many([Task(type="work", queue="fc", payload=i) for i in range(20)])
    async with running_worker(
        registry, redis_url, ["fc"], concurrency=4, heartbeat_s=0.1, poll_interval_s=0.05
    ) as w:
        await wait_until(lambda: w.processed == 21)
        await asyncio.sleep(0.3)  # a heartbeat carries the run times
    info = client.get_task(flaky.id)
    assert info is not None
    timeline = inspect.attempts(info)
    assert [a.outcome for a in timeline] == ["retry", "completed"]
    assert timeline[0].error == "RuntimeError: first try fails" and timeline[0].worker == w.id
    assert all(a.duration_s is not None and a.duration_s >= 0.02 for a in timeline)
    fc = client.call(inspect.forecast, "fc", ["work"])
    assert fc is not None and fc.pending == 0 and fc.level == "ok"
    (rt,) = fc.runtimes
    assert rt.samples == 21 and 0.02 <= rt.p50_s <= rt.p95_s


def test_forecast_flags_a_queue_that_does_not_drain(client: Client) -> None:
    client.enqueue_many([Task(type="t", queue="stuck") for _ in range(10)])
    fc = client.call(inspect.forecast, "stuck")
    assert fc is not None and fc.pending == 10 and fc.drain_minutes is None and fc.level == "alert"


def test_cron_control_next_fires_run_now_pause_and_last_runs(client: Client) -> None:
    client.run(
        scheduler.register(
            client.settings, CronDef("sweep", "*/15 * * * *", "order:timeout_sweep", None, "UTC", "cron-q")
        )
    )
    (entry,) = client.call(inspect.cron_entries)
    assert len(entry.next_fires) == 5 and all(
        b - a == 15 * 60_000 for a, b in zip(entry.next_fires, entry.next_fires[1:], strict=False)
    )
    task_id = client.call(admin.run_cron_now, "sweep")
    assert client.get_task(task_id) is not None
    (job,) = lease(client, "cron-q")
    fail(client, job, "sweep failed")
    assert client.call(admin.set_cron_paused, "sweep", True)
    (entry,) = client.call(inspect.cron_entries)
    assert (
        entry.paused
        and entry.runs[0].task_id == task_id
        and entry.runs[0].manual
        and entry.runs[0].state == "dead"
    )
    created = client.run(scheduler.tick_op(client.settings, [], {}))
    assert created == []  # paused entries do not fire


def test_search_finds_matches_beyond_the_first_page_within_a_bound(client: Client) -> None:
    client.enqueue_many([Task(type="order:sms", queue="srch", payload={"n": i}) for i in range(1200)])
    client.enqueue("order:payment", {"card": "VISA-needle"}, queue="srch")
    page = client.call(inspect.search, "srch", "pending", "NEEDLE")
    assert [t.type for t in page.tasks] == ["order:payment"] and page.total == 1201 and page.offset == 1201
    bounded = client.call(inspect.search, "srch", "pending", "needle", scan_limit=600)
    assert bounded.tasks == [] and bounded.offset == 600  # looked at 600, says so
    by_type = client.call(inspect.search, "srch", "pending", "order:sms", limit=5)
    assert len(by_type.tasks) == 5


async def test_worker_registry_shows_busy_slots_within_seconds(redis_url: str) -> None:
    registry = Registry()
    gate = asyncio.Event()

    @registry.task("hold", queue="reg2")
    async def hold(ctx: TaskContext, payload: Any) -> None:
        await gate.wait()

    client = Client(redis_url)
    async with running_worker(
        registry, redis_url, ["reg2"], concurrency=2, lease_s=30
    ):  # lease heartbeat 10 s
        await asyncio.sleep(0.5)
        client.enqueue("hold", None, queue="reg2")
        client.enqueue("hold", None, queue="reg2")
        started = time.monotonic()
        await wait_until(lambda: any(w.busy == 2 for w in client.call(inspect.workers)), timeout=6)
        assert time.monotonic() - started < 5  # not after the 10 s lease heartbeat
        gate.set()


@pytest.mark.parametrize("queue", ["orders", "busybox"])
def test_why_next_up_does_not_depend_on_the_queue_name(client: Client, queue: str) -> None:
    """The old explainer found 'busy' in its own message naming queue 'busybox' and called the
    next task blocked."""
    fields = {
        "host": "h",
        "pid": 1,
        "queues": queue,
        "concurrency": 4,
        "started": 0,
        "busy": 0,
        "tasks": "[]",
    }
    client.run(protocol.beat_registry(client.settings, "w-live", fields, 60_000))
    r = client.enqueue("t", None, queue=queue)
    e = client.call(explain.why, r.id)
    assert not e.blocked
    assert e.reasons == ("next up", f"position 1 of 1 in {queue!r}")


def test_enqueues_are_counted_per_minute_for_the_forecast(client: Client) -> None:
    client.enqueue_many([Task(type="t", queue="inflow") for _ in range(3)])
    client.enqueue("t", None, queue="inflow", delay=60)
    summary = client.call(inspect.queue, "inflow")
    assert summary is not None and summary.arrivals[-1] == 4
    assert sum(summary.arrivals) == 4 and len(summary.arrivals) == len(summary.throughput)
