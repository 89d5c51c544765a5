"""``explain`` decides on typed reasons from canned facts: no server, milliseconds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.explain import Facts, Reason, explain
from engine.inspect import WorkerSummary
from engine.task import TaskInfo, TaskState

NOW = 1_700_000_000_000


def worker(
    queue: str, *, busy: int = 0, concurrency: int = 4, age_ms: int = 0, wid: str = "w1"
) -> WorkerSummary:
    return WorkerSummary(
        id=wid,
        host="h",
        pid=1,
        queues=(queue,),
        concurrency=concurrency,
        busy=busy,
        started_ms=NOW - 60_000,
        heartbeat_ms=NOW - age_ms,
        tasks=(),
        now_ms=NOW,
    )


def facts(queue: str, state: TaskState = TaskState.PENDING, **kw: object) -> Facts:
    info = TaskInfo(id="t1", type="x", queue=queue, state=state, max_retry=2)
    base = Facts(info=info, now_ms=NOW, workers=(worker(queue),), position=0, pending_total=1)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("queue", ["orders", "busybox", "busy", "paused-queue", "slots"])
def test_next_up_whatever_the_queue_is_called(queue: str) -> None:
    """The old explainer looked for the word 'busy' in its own messages, which name the queue:
    queue 'busybox' came out blocked with no 'next up'."""
    e = explain(facts(queue))
    assert not e.blocked
    assert e.causes[0].reason is Reason.NEXT_UP
    assert [c.reason for c in e.causes] == [Reason.NEXT_UP, Reason.POSITION]


def test_behind_other_tasks_is_blocked() -> None:
    e = explain(facts("busybox", position=3, pending_total=9))
    assert e.blocked and e.causes[0].reason is Reason.BEHIND
    assert "position 4 of 9 in 'busybox'" in e.reasons


def test_all_slots_busy_blocks_and_is_not_next_up() -> None:
    e = explain(facts("q", workers=(worker("q", busy=4),)))
    assert e.blocked
    assert {c.reason for c in e.causes} == {Reason.SLOTS_BUSY, Reason.POSITION}


def test_paused_and_no_worker() -> None:
    e = explain(facts("q", paused=True, workers=(worker("q", age_ms=600_000),)))
    assert e.blocked
    kinds = [c.reason for c in e.causes]
    assert kinds[:2] == [Reason.PAUSED, Reason.NO_WORKER]
    assert "stale heartbeats: w1" in e.reasons[1]


def test_prefetched_task_waits_for_a_slot_not_running_for_0_s() -> None:
    info = TaskInfo(
        id="t1",
        type="x",
        queue="q",
        max_retry=2,
        state=TaskState.ACTIVE,
        worker="w1",
        lease_expiry_ms=NOW + 30_000,
    )
    e = explain(facts("q", info=info, reserved=True, workers=(worker("q", busy=4),)))
    assert e.blocked and [c.reason for c in e.causes] == [Reason.AWAITING_SLOT]
    assert (
        e.reasons[0]
        == "prefetched by w1, waiting for one of its 4 slots (4 busy); attempt 1 of 3 starts then"
    )


def test_running_task_is_not_blocked() -> None:
    info = TaskInfo(
        id="t1",
        type="x",
        queue="q",
        max_retry=2,
        state=TaskState.ACTIVE,
        worker="w1",
        attempts=1,
        started_at_ms=NOW - 5_000,
        lease_expiry_ms=NOW + 30_000,
        progress=40,
        progress_message="halfway",
    )
    e = explain(facts("q", info=info))
    assert not e.blocked
    assert e.reasons == ("running on w1 for 5 s (attempt 1 of 3, 40% halfway)",)


@pytest.mark.parametrize(
    ("lease", "age_ms", "reason"),
    [(NOW - 1_000, 0, Reason.LEASE_EXPIRED), (NOW + 9_000, 600_000, Reason.WORKER_STALE)],
)
def test_active_with_a_lost_worker(lease: int, age_ms: int, reason: Reason) -> None:
    info = TaskInfo(
        id="t1", type="x", queue="q", max_retry=2, state=TaskState.ACTIVE, worker="w1", lease_expiry_ms=lease
    )
    e = explain(facts("q", info=info, workers=(worker("q", age_ms=age_ms),)))
    assert e.blocked and [c.reason for c in e.causes] == [reason]


def test_scheduled_due_retry_waiting_and_finished() -> None:
    later = facts("q").info.model_copy(update=dict(state=TaskState.SCHEDULED, due_at_ms=NOW + 600_000))
    assert explain(facts("q", info=later)).reasons == ("scheduled: becomes due in 10 min",)
    due = later.model_copy(update=dict(due_at_ms=NOW - 1))
    e = explain(facts("q", info=due, workers=()))
    assert [c.reason for c in e.causes] == [Reason.DUE, Reason.NO_WORKER] and e.blocked
    retry = later.model_copy(
        update=dict(state=TaskState.RETRY, attempts=1, last_error="HTTP 503", due_at_ms=NOW + 100_000)
    )
    assert explain(facts("q", info=retry)).reasons == (
        "retry after attempt 1 of 3 failed: HTTP 503; due in 100 s",
    )
    waiting = later.model_copy(update=dict(state=TaskState.WAITING, reason="held: dependency a|1 died"))
    e = explain(facts("q", info=waiting, dependency_states=(("a|1", "active"), ("b|2", "gone"))))
    assert e.reasons == ("waiting on dependencies: a|1 (active), b|2 (gone)", "held: dependency a|1 died")
    e = explain(facts("q", info=waiting.model_copy(update=dict(reason=None))))
    assert [c.reason for c in e.causes] == [Reason.RELEASE_PENDING]
    dead = later.model_copy(update=dict(state=TaskState.DEAD, last_error="card expired"))
    e = explain(facts("q", info=dead))
    assert not e.blocked and e.reasons == ("not running because it is dead: card expired",)


def test_unique_key_held_by_another_live_task() -> None:
    info = facts("q").info.model_copy(update=dict(unique_key="order-9"))
    e = explain(facts("q", info=info, unique_holder="t0"))
    assert e.causes[-1].reason is Reason.UNIQUE_HELD and not e.blocked
    assert explain(facts("q", info=info, unique_holder="t1")).causes[-1].reason is Reason.POSITION
