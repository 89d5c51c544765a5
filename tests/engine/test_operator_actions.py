"""Operator actions keep a task's meaning: restore puts a task back where it was (waiting for
its dependencies, scheduled at its due time, never still leased to a worker); requeue and
restore take the unique lock again and refuse when another live task holds it; dependents of
a task that is purged or gone are told; the dependency policy travels with the task; bad
configuration and bad tasks are refused before anything is written."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner

from engine import admin, ops
from engine.cli import cli
from engine.client import Client, build_task
from engine.errors import InvalidTask
from engine.ops import Settings
from engine.task import TaskState
from engine.worker import protocol

KEY = "rediq:{%s}:"


def lease(client: Client, queue: str, n: int = 1, start_now: int | None = None) -> list[protocol.Job]:
    call = protocol.dequeue_call(client.settings, queue, n, 30_000, "w1", start_now=start_now)
    return protocol.parse_dequeue(queue, client.backend.execute(call))


def complete(client: Client, job: protocol.Job) -> None:
    client.backend.execute(protocol.ack_call(client.settings, job.queue, [(job.id, job.token, "")]))
    client.run(ops.flush_outbox(client.settings, job.queue, [job.id]))


def kill(client: Client, job: protocol.Job) -> None:
    client.backend.execute(
        protocol.fail_call(client.settings, job.queue, job.id, job.token, "boom", "", 0, "permanent")
    )


def state_of(client: Client, task_id: str) -> TaskState | None:
    info = client.get_task(task_id)
    return None if info is None else info.state


# ------------------------------------------------------------------------- restore


def test_delete_and_restore_of_a_prefetched_task_leaves_no_worker_or_lease(
    client: Client, raw: redis.Redis
) -> None:
    r = client.enqueue("t", None, queue="rp")
    (job,) = lease(client, "rp", start_now=0)
    assert job.reserved and raw.hget(KEY % "rp" + f"t:{r.id}", "reserved") == "1"
    client.call(admin.delete, "rp", [r.id])
    assert client.call(admin.restore, "rp", [r.id]) == [r.id]
    fields = raw.hgetall(KEY % "rp" + f"t:{r.id}")
    assert fields["state"] == "pending"
    assert {"reserved", "worker", "lease"}.isdisjoint(fields), fields
    # and a worker gets it as a fresh task, started and charged at once
    (again,) = lease(client, "rp")
    assert again.id == r.id and not again.reserved and again.attempt == 1


def test_restore_of_a_waiting_task_waits_for_its_dependencies(client: Client) -> None:
    parent = client.enqueue("t", None, queue="rw")
    child = client.enqueue("t", None, queue="rw", depends_on=[parent.id])
    client.call(admin.delete, "rw", [child.id])
    assert client.call(admin.restore, "rw", [child.id]) == [child.id]
    assert state_of(client, child.id) == TaskState.WAITING  # not run at once
    (job,) = lease(client, "rw")
    assert job.id == parent.id
    complete(client, job)
    assert state_of(client, child.id) == TaskState.PENDING


def test_restore_of_a_waiting_task_whose_dependency_finished_meanwhile_releases_it(client: Client) -> None:
    parent = client.enqueue("t", None, queue="rf")
    child = client.enqueue("t", None, queue="rf", depends_on=[parent.id])
    client.call(admin.delete, "rf", [child.id])
    (job,) = lease(client, "rf")
    complete(client, job)
    client.call(admin.restore, "rf", [child.id])
    assert state_of(client, child.id) == TaskState.PENDING


def test_restore_of_a_scheduled_task_keeps_its_due_time(client: Client, raw: redis.Redis) -> None:
    later = client.enqueue("t", None, queue="rs", delay=600)
    due = int(raw.hget(KEY % "rs" + f"t:{later.id}", "due") or 0)
    client.call(admin.delete, "rs", [later.id])
    client.call(admin.restore, "rs", [later.id])
    assert state_of(client, later.id) == TaskState.SCHEDULED
    assert raw.zscore(KEY % "rs" + "scheduled", later.id) == due
    assert lease(client, "rs") == []


# ------------------------------------------------------------------------- unique lock


def test_requeue_takes_the_unique_lock_again_and_refuses_when_another_holds_it(client: Client) -> None:
    first = client.enqueue("t", None, queue="ru", unique_key="k")
    (job,) = lease(client, "ru")
    kill(client, job)  # dead: the lock is released
    second = client.enqueue("t", None, queue="ru", unique_key="k")
    assert second.created
    moved = client.call(admin.requeue, "ru", [first.id])
    assert moved == [] and "held by live task " + second.id in moved.refused[first.id]
    assert state_of(client, first.id) == TaskState.DEAD
    client.cancel(second.id)
    assert client.call(admin.requeue, "ru", [first.id]) == [first.id]
    third = client.enqueue("t", None, queue="ru", unique_key="k")
    assert third.status == "duplicate" and third.id == first.id  # the requeued task holds it
    client.cancel(first.id)


def test_restore_refuses_a_task_whose_unique_key_another_live_task_holds(client: Client) -> None:
    first = client.enqueue("t", None, queue="rq", unique_key="k")
    client.call(admin.delete, "rq", [first.id])
    second = client.enqueue("t", None, queue="rq", unique_key="k")
    assert second.created
    restored = client.call(admin.restore, "rq", [first.id])
    assert restored == [] and second.id in restored.refused[first.id]
    assert state_of(client, first.id) == TaskState.QUARANTINED
    client.cancel(second.id)
    assert client.call(admin.restore, "rq", [first.id]) == [first.id]
    assert client.enqueue("t", None, queue="rq", unique_key="k").id == first.id
    client.cancel(first.id)


def test_cli_reports_a_refused_restore_and_retry_in_one_line(redis_url: str, client: Client) -> None:
    first = client.enqueue("t", None, queue="rc", unique_key="k")
    client.call(admin.delete, "rc", [first.id])
    second = client.enqueue("t", None, queue="rc", unique_key="k")
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "queue", "restore", "rc", first.id])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "refused 1: " + first.id in lines[0] and second.id in lines[0], lines
    client.cancel(second.id)
    client.call(admin.restore, "rc", [first.id])
    (job,) = lease(client, "rc")
    kill(client, job)
    third = client.enqueue("t", None, queue="rc", unique_key="k")
    retry = CliRunner().invoke(cli, ["--redis-url", redis_url, "task", "retry", first.id])
    assert retry.exit_code != 0 and f"held by live task {third.id}" in str(retry.exception), retry.output
    client.cancel(third.id)


# ------------------------------------------------------------------------- dependencies


def test_the_policy_stored_at_enqueue_decides_not_the_resolver(redis_url: str, client: Client) -> None:
    with Client(redis_url, settings=Settings(dependency_failure="hold")) as holder:
        parent = holder.enqueue("t", None, queue="dp")
        child = holder.enqueue("t", None, queue="dp", depends_on=[parent.id])
    (job,) = lease(client, "dp")  # client: the default policy, 'cancel'
    kill(client, job)
    client.run(ops.flush_outbox(client.settings, "dp", [job.id]))
    info = client.get_task(child.id)
    assert info is not None and info.state == TaskState.WAITING and "dead" in (info.reason or "")
    client.cancel(child.id)


def test_a_client_reads_the_dependency_policy_from_the_environment(
    redis_url: str, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = client.enqueue("t", None, queue="de")
    (job,) = lease(client, "de")
    kill(client, job)
    client.run(ops.flush_outbox(client.settings, "de", [job.id]))
    monkeypatch.setenv("REDIQ_DEPENDENCY_FAILURE", "hold")
    with Client(redis_url) as producer:
        child = producer.enqueue("t", None, queue="de", depends_on=[parent.id])
    assert state_of(client, child.id) == TaskState.WAITING  # held, not cancelled
    per_task = client.enqueue("t", None, queue="de", depends_on=[parent.id], dependency_failure="cancel")
    assert state_of(client, per_task.id) == TaskState.CANCELLED
    client.cancel(child.id)


@pytest.mark.parametrize("action", [admin.delete, admin.purge])
def test_dependents_of_a_deleted_task_are_resolved(client: Client, action: object) -> None:
    parent = client.enqueue("t", None, queue="dd")
    child = client.enqueue("t", None, queue="dd", depends_on=[parent.id])
    client.call(action, "dd", [parent.id])  # type: ignore[arg-type]
    info = client.get_task(child.id)
    assert info is not None and info.state == TaskState.CANCELLED, info
    assert parent.id in (info.reason or "")


def test_dependents_of_a_flushed_task_are_held_under_hold(redis_url: str, client: Client) -> None:
    with Client(redis_url, settings=Settings(dependency_failure="hold")) as holder:
        parent = holder.enqueue("t", None, queue="df")
        child = holder.enqueue("t", None, queue="df", depends_on=[parent.id])
    (job,) = lease(client, "df")
    kill(client, job)
    client.run(ops.flush_outbox(client.settings, "df", [job.id]))
    assert client.call(admin.flush, "df", TaskState.DEAD) == 1
    info = client.get_task(child.id)
    assert info is not None and info.state == TaskState.WAITING and "requeue it" in (info.reason or "")
    client.cancel(child.id)


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "options",
    [{"unique_key": "k", "unique_ttl": 1e16}, {"delay": 1e16}, {"timeout": 0.0001}],
)
def test_a_bad_task_is_refused_before_any_task_of_its_batch_is_sent(
    client: Client, raw: redis.Redis, options: dict[str, object]
) -> None:
    with pytest.raises(InvalidTask):
        tasks = [build_task("t", i, queue="bv") for i in range(3)]
        tasks.append(build_task("t", None, queue="bv", **options))
        client.enqueue_many(tasks)
    assert raw.keys(KEY % "bv" + "*") == []


def test_bulk_requeue_skips_and_reports_a_task_whose_unique_key_is_held(
    redis_url: str, client: Client
) -> None:
    first = client.enqueue("t", None, queue="rb", unique_key="k")
    other = client.enqueue("t", None, queue="rb")
    for job in lease(client, "rb", n=2):
        kill(client, job)
    holder = client.enqueue("t", None, queue="rb", unique_key="k")
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "dead", "requeue", "rb", "--all"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("requeued 1 dead task(s) of queue rb; refused 1: " + first.id), line
    assert holder.id in line
    assert state_of(client, other.id) == TaskState.PENDING
    assert state_of(client, first.id) == TaskState.DEAD
    client.call(admin.delete, "rb", [holder.id, other.id, first.id])
