"""``expires`` against a real server: a task not started by its deadline ends ``expired`` (a
final state, with its reason), is never run, releases its unique lock and fails its dependents
under their stored policy; decided in Lua where an attempt would start (dequeue, the start of
a reserved or handed-off task) and by the sweep for tasks nobody dequeues. A task that started
in time runs to completion. Bad values are refused in one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from engine import Client, Fixed, Registry, TaskContext, TaskExpired, ops
from engine.errors import InvalidTask
from engine.inspect import QueueSummary, queues
from engine.task import TaskState
from engine.worker import protocol
from tests.engine.conftest import running_worker, wait_until, wait_until_sync

Q = "ex"
INDEX = "rediq:{ex}:expiries"


def server_ms(client: Client) -> int:
    return client.run(ops.server_time_ms())


def wait_past_deadline(client: Client, task_id: str) -> None:
    """Until the server's clock is past the task's deadline (the deadline is server time)."""
    info = client.get_task(task_id)
    assert info is not None and info.expires_at_ms is not None
    deadline = info.expires_at_ms
    wait_until_sync(lambda: server_ms(client) > deadline, interval=0.01)


def deadline_in(client: Client, raw: redis.Redis, task_id: str, ms: int) -> int:
    """Move a task's deadline to ``ms`` from now on the server's clock (stored and indexed as
    enqueue does): a test can let a task start in time whatever the load, then pass it."""
    deadline = server_ms(client) + ms
    raw.hset(f"rediq:{{ex}}:t:{task_id}", "exp", deadline)
    raw.zadd(INDEX, {task_id: deadline})
    return deadline


def summary_of(client: Client) -> QueueSummary:
    return client.run(queues(client.settings, [Q]))[0]


def state_of(client: Client, task_id: str) -> TaskState | None:
    info = client.get_task(task_id)
    return None if info is None else info.state


def dequeue(client: Client, worker: str = "w1", start_now: int | None = None) -> list[protocol.Job]:
    reply = client.backend.execute(
        protocol.dequeue_call(client.settings, Q, 10, 30_000, worker, start_now=start_now)
    )
    return protocol.parse_dequeue(Q, reply)


def test_a_task_not_started_by_its_deadline_expires_at_dequeue_and_is_never_delivered(
    client: Client, raw: redis.Redis
) -> None:
    late = client.enqueue("job", {"n": 1}, queue=Q, expires=0.05)
    on_time = client.enqueue("job", {"n": 2}, queue=Q, expires=3600)
    plain = client.enqueue("job", {"n": 3}, queue=Q)
    wait_past_deadline(client, late.id)
    delivered = [j.id for j in dequeue(client)]
    assert delivered == [on_time.id, plain.id]
    info = client.get_task(late.id)
    assert info is not None and info.state == TaskState.EXPIRED and info.state.is_final
    assert info.attempts == 0 and info.started_at_ms is None and info.finished_at_ms
    assert info.reason is not None and info.reason.startswith("not started by its deadline")
    assert "while pending" in info.reason
    assert info.history[0].state == "expired"
    summary = summary_of(client)
    assert summary.count(TaskState.EXPIRED) == 1 and summary.count(TaskState.PENDING) == 0
    assert raw.zscore(INDEX, late.id) is None
    # waiting for its result says why there is none
    with pytest.raises(TaskExpired, match="not started by its deadline") as caught:
        late.wait(timeout=5)
    assert "\n" not in str(caught.value)


def test_the_sweep_expires_pending_scheduled_and_waiting_tasks_nobody_dequeues(
    client: Client, raw: redis.Redis
) -> None:
    pending = client.enqueue("job", 1, queue=Q, expires=0.05)
    scheduled = client.enqueue("job", 2, queue=Q, delay=0.02, expires=0.05)
    blocker = client.enqueue("job", 3, queue="other")
    waiting = client.enqueue("job", 4, queue=Q, depends_on=[blocker.id], expires=0.05)
    later = client.enqueue("job", 5, queue=Q, delay=60, expires=120)
    for r in (pending, scheduled, waiting):
        wait_past_deadline(client, r.id)
    assert state_of(client, scheduled.id) == TaskState.SCHEDULED  # nothing dequeued: not promoted
    expired = client.run(ops.expire_due(client.settings, Q))
    assert sorted(expired) == sorted([pending.id, scheduled.id, waiting.id])
    reasons = {r.id: client.get_task(r.id).reason for r in (pending, scheduled, waiting)}  # type: ignore[union-attr]
    assert "while pending" in reasons[pending.id]  # type: ignore[operator]
    assert "while scheduled" in reasons[scheduled.id]  # type: ignore[operator]
    assert "while waiting" in reasons[waiting.id]  # type: ignore[operator]
    summary = summary_of(client)
    assert summary.count(TaskState.EXPIRED) == 3
    assert summary.count(TaskState.PENDING) == summary.count(TaskState.WAITING) == 0
    assert summary.count(TaskState.SCHEDULED) == 1 and state_of(client, later.id) == TaskState.SCHEDULED
    assert raw.zrange(INDEX, 0, -1) == [later.id]
    # the blocker finishing later finds its dependent gone from waiting: nothing changes
    assert client.run(ops.expire_due(client.settings, Q)) == []


def test_a_due_scheduled_task_past_its_deadline_expires_instead_of_being_promoted(client: Client) -> None:
    r = client.enqueue("job", 1, queue=Q, delay=0.02, expires=0.05)
    wait_past_deadline(client, r.id)
    assert dequeue(client) == []
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.EXPIRED and "while scheduled" in (info.reason or "")


def test_a_reserved_task_past_its_deadline_is_not_started(client: Client, raw: redis.Redis) -> None:
    """Prefetched (reserved) and then held until a slot freed: start.lua decides."""
    r = client.enqueue("job", 1, queue=Q, expires=3600)
    (job,) = dequeue(client, start_now=0)
    assert job.reserved
    deadline_in(client, raw, r.id, 50)
    wait_past_deadline(client, r.id)
    reply = client.backend.execute(protocol.start_call(client.settings, Q, [job]))
    assert protocol.parse_started(reply) == {r.id: 0}  # refused: the handler does not run
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.EXPIRED and info.attempts == 0
    assert "reserved by w1" in (info.reason or "")
    assert raw.zscore("rediq:{ex}:active", r.id) is None


def test_a_task_handed_off_by_enqueue_expires_if_it_starts_too_late(client: Client, raw: redis.Redis) -> None:
    # a worker idle on the queue registers for hand-offs
    register = protocol.dequeue_call(client.settings, Q, 1, 30_000, "w1", start_now=1, handoff_ms=60_000)
    client.backend.execute(register)
    r = client.enqueue("job", 1, queue=Q, expires=0.05)
    assert r.state == "active"  # handed straight to w1's inbox, reserved
    record = raw.lpop("rediq:{ex}:inbox:w1")
    assert isinstance(record, str)
    job = protocol.parse_handoff(Q, record)
    wait_past_deadline(client, r.id)
    reply = client.backend.execute(protocol.start_call(client.settings, Q, [job]))
    assert protocol.parse_started(reply) == {r.id: 0}
    assert state_of(client, r.id) == TaskState.EXPIRED


def test_a_started_task_is_not_stopped_by_its_deadline_and_its_index_entry_goes(
    client: Client, raw: redis.Redis
) -> None:
    r = client.enqueue("job", 1, queue=Q, expires=3600)
    (job,) = dequeue(client)
    deadline_in(client, raw, r.id, 50)
    wait_past_deadline(client, r.id)
    # the sweep sees it running: it stays indexed (it may fail back to retry), re-checked later
    assert client.run(ops.expire_due(client.settings, Q, recheck_s=0.01)) == []
    assert state_of(client, r.id) == TaskState.ACTIVE
    client.backend.execute(protocol.ack_call(client.settings, Q, [(job.id, job.token, '"done"')]))
    assert state_of(client, r.id) == TaskState.COMPLETED
    wait_until_sync(lambda: (client.run(ops.expire_due(client.settings, Q)) == []) and raw.zcard(INDEX) == 0)


async def test_with_a_worker_a_task_started_in_time_completes_past_its_deadline(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()

    @registry.task("slow", queue=Q)
    async def slow(ctx: TaskContext, payload: Any) -> str:
        # started in time (the deadline is an hour away); now the deadline passes while it runs
        deadline = deadline_in(client, raw, ctx.id, 50)
        # run on until the worker's sweep has looked at it past its deadline (it re-checks a
        # running task later instead of expiring it)
        await wait_until(lambda: (raw.zscore(INDEX, ctx.id) or 0) > deadline, interval=0.01)
        return "finished"

    async with running_worker(registry, redis_url, [Q], maintenance_s=0.05):
        r = client.enqueue("slow", None, queue=Q, expires=3600)
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED, timeout=30)
    info = client.get_task(r.id)
    assert info is not None and info.result == "finished" and info.attempts == 1


async def test_a_retry_due_after_the_deadline_expires_with_a_worker_sweeping(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    runs: list[int] = []

    @registry.task("flaky", queue=Q, max_retry=5, retry=Fixed(seconds=60, jitter=0))
    async def flaky(ctx: TaskContext, payload: Any) -> None:
        runs.append(ctx.attempt)
        deadline_in(client, raw, ctx.id, 50)  # started in time; passes before its retry is due
        raise RuntimeError("gateway down")

    async with running_worker(registry, redis_url, [Q], maintenance_s=0.05):
        r = client.enqueue("flaky", None, queue=Q, expires=3600)
        await wait_until(lambda: state_of(client, r.id) == TaskState.EXPIRED)
    info = client.get_task(r.id)
    assert info is not None and info.attempts == 1 and runs == [1]
    assert "while retry" in (info.reason or "")


async def test_a_paused_queue_s_tasks_expire_by_the_worker_s_sweep(redis_url: str, client: Client) -> None:
    registry = Registry()

    @registry.task("job", queue=Q)
    async def job(ctx: TaskContext, payload: Any) -> None:
        raise AssertionError("an expired task must never run")

    client.pause(Q)
    r = client.enqueue("job", None, queue=Q, expires=0.05)
    async with running_worker(registry, redis_url, [Q], maintenance_s=0.05):
        await wait_until(lambda: state_of(client, r.id) == TaskState.EXPIRED)
    client.resume(Q)


def test_dependents_of_an_expired_task_fail_under_their_stored_policy(client: Client) -> None:
    parent = client.enqueue("job", 1, queue=Q, expires=0.05)
    cancelled = client.enqueue("job", 2, queue=Q, depends_on=[parent.id], dependency_failure="cancel")
    held = client.enqueue("job", 3, queue=Q, depends_on=[parent.id], dependency_failure="hold")
    wait_past_deadline(client, parent.id)
    assert client.run(ops.expire_due(client.settings, Q)) == [parent.id]  # tells the dependents
    c = client.get_task(cancelled.id)
    assert c is not None and c.state == TaskState.CANCELLED
    h = client.get_task(held.id)
    assert h is not None and h.state == TaskState.WAITING and h.reason and "expired" in h.reason
    # a dependency already expired resolves a new dependent at once
    late = client.enqueue("job", 4, queue=Q, depends_on=[parent.id], dependency_failure="cancel")
    assert state_of(client, late.id) == TaskState.CANCELLED


def test_an_expired_task_releases_its_unique_lock(client: Client, raw: redis.Redis) -> None:
    first = client.enqueue("job", 1, queue=Q, unique_key="order-7", expires=0.05)
    assert client.enqueue("job", 1, queue=Q, unique_key="order-7").status == "duplicate"
    wait_past_deadline(client, first.id)
    client.run(ops.expire_due(client.settings, Q))
    assert raw.get("rediq:{ex}:unique:order-7") is None
    again = client.enqueue("job", 1, queue=Q, unique_key="order-7")
    assert again.status == "new" and again.id != first.id


def test_an_expired_task_requeued_runs_without_its_deadline(client: Client, raw: redis.Redis) -> None:
    r = client.enqueue("job", 1, queue=Q, expires=0.05)
    wait_past_deadline(client, r.id)
    client.run(ops.expire_due(client.settings, Q))
    assert client.requeue(r.id, Q)
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.PENDING and info.expires_at_ms is None
    assert [j.id for j in dequeue(client)] == [r.id]


def test_retention_trims_and_doctor_accepts_expired_tasks(client: Client) -> None:
    from engine import doctor

    r = client.enqueue("job", 1, queue=Q, expires=0.05)
    wait_past_deadline(client, r.id)
    client.run(ops.expire_due(client.settings, Q))
    assert [f for f in client.run(doctor.examine(client.settings)) if f.queue == Q] == []
    assert client.run(ops.delete(client.settings, Q, [r.id])) == [r.id]
    summary = summary_of(client)
    assert summary.count(TaskState.EXPIRED) == 0


def test_a_type_declares_expires_and_an_explicit_value_wins(redis_url: str, raw: redis.Redis) -> None:
    registry = Registry()

    @registry.task("decl", queue=Q, expires=60)
    async def decl(ctx: TaskContext, payload: Any) -> None: ...

    with Client(redis_url, registry=registry) as client:
        now = server_ms(client)
        by_type = client.enqueue("decl", 1)
        explicit = client.enqueue("decl", 2, expires=5)
        unset = client.enqueue("job", 3, queue=Q)
        # delayed past the declared lifetime: the declaration gives it no deadline (it could
        # only expire unstarted); an explicit one is checked against the delay instead
        delayed = client.enqueue("decl", 4, delay=120)
        exp = {r.id: client.get_task(r.id).expires_at_ms for r in (by_type, explicit, unset, delayed)}  # type: ignore[union-attr]
    assert 55_000 < exp[by_type.id] - now <= 61_000  # type: ignore[operator]
    assert 0 < exp[explicit.id] - now <= 6_000  # type: ignore[operator]
    assert exp[unset.id] is None and exp[delayed.id] is None
    assert raw.hget(f"rediq:{{ex}}:t:{unset.id}", "exp") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "expires must be > 0"),
        (0, "expires must be > 0"),
        (float("nan"), "expires must be > 0"),
        (float("inf"), "expires must be > 0"),
        (datetime.now(UTC) - timedelta(minutes=5), "expires must be in the future"),
        (datetime(2030, 1, 1), "expires must be timezone-aware"),  # noqa: DTZ001 - the point
    ],
)
def test_a_bad_expires_is_refused_in_one_line(client: Client, value: Any, message: str) -> None:
    with pytest.raises(InvalidTask, match=message) as caught:
        client.enqueue("job", None, queue=Q, expires=value)
    assert "\n" not in str(caught.value)


def test_an_expires_before_the_delay_is_refused(client: Client) -> None:
    with pytest.raises(InvalidTask, match="expires must be later than the task's delay/eta"):
        client.enqueue("job", None, queue=Q, delay=60, expires=30)
    with pytest.raises(InvalidTask, match="expires"):
        Registry().task("bad", expires=-5)


def test_cli_inspect_and_why_show_an_expired_task_and_its_reason(redis_url: str, client: Client) -> None:
    from click.testing import CliRunner

    from engine.cli import cli

    r = client.enqueue("job", 1, queue=Q, expires=0.05)
    wait_past_deadline(client, r.id)
    client.run(ops.expire_due(client.settings, Q))
    shown = CliRunner().invoke(
        cli, ["--redis-url", redis_url, "task", "inspect", r.id], catch_exceptions=False
    )
    fields = dict(
        line.split(None, 1) for line in shown.output.splitlines() if line and not line.startswith(" ")
    )
    assert fields["state"] == "expired"
    assert fields["reason"].startswith("not started by its deadline")
    assert fields["expires"].endswith("Z")
    why = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "why", r.id], catch_exceptions=False)
    assert "not running because it is expired: not started by its deadline" in why.output


def test_expired_tasks_flush_to_quarantine_restore_and_requeue_in_bulk(
    client: Client, raw: redis.Redis
) -> None:
    from engine import admin

    ids = [client.enqueue("job", i, queue=Q, expires=0.05).id for i in range(3)]
    for task_id in ids:
        wait_past_deadline(client, task_id)
    assert sorted(client.run(ops.expire_due(client.settings, Q))) == sorted(ids)
    assert client.run(admin.flush(client.settings, Q, TaskState.EXPIRED)) == 3
    assert summary_of(client).count(TaskState.QUARANTINED) == 3
    assert sorted(client.run(ops.restore(client.settings, Q, ids))) == sorted(ids)
    assert summary_of(client).count(TaskState.EXPIRED) == 3  # back where they were deleted from
    assert raw.pttl(f"rediq:{{ex}}:t:{ids[0]}") > 0  # kept for the retention again
    assert client.run(admin.requeue_all(client.settings, Q, TaskState.EXPIRED)) == 3
    assert summary_of(client).count(TaskState.PENDING) == 3
