"""Every explanation, word for word, from canned facts: a changed condition, boundary or message
in ``engine.explain`` fails a named case (issue 23's mutation bar)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.explain import Facts, Reason, _ago, explain
from engine.inspect import WorkerSummary
from engine.task import TaskInfo, TaskState

NOW = 1_700_000_000_000
R = Reason


def w(*, busy: int = 0, age_ms: int = 0, queue: str = "q", wid: str = "w1") -> WorkerSummary:
    return WorkerSummary(wid, "h", 1, (queue,), 2, busy, NOW - 60_000, NOW - age_ms, (), NOW)


def case(state: TaskState, workers: tuple[WorkerSummary, ...] = (w(),), **kw: Any) -> Facts:
    info_fields = {k: kw.pop(k) for k in list(kw) if k in TaskInfo.model_fields}
    info = TaskInfo(id="t1", type="x", queue="q", state=state, max_retry=2, **info_fields)
    return Facts(info=info, now_ms=NOW, workers=workers, **kw)


P, A = TaskState.PENDING, TaskState.ACTIVE
CASES: dict[str, tuple[Facts, list[tuple[Reason, str]]]] = {
    "paused, stale worker": (
        case(P, (w(age_ms=600_000),), paused=True, position=1, pending_total=2),
        [
            (R.PAUSED, "queue 'q' is paused: resume it with `rediq queue resume q`"),
            (R.NO_WORKER, "no live worker serves queue 'q' (stale heartbeats: w1)"),
            (R.POSITION, "position 2 of 2 in 'q'"),
        ],
    ),
    "no worker at all": (
        case(P, (), position=0, pending_total=1),
        [(R.NO_WORKER, "no live worker serves queue 'q'"), (R.POSITION, "position 1 of 1 in 'q'")],
    ),
    "two stale workers": (
        case(P, (w(age_ms=600_000), w(age_ms=600_000, wid="w2"))),
        [(R.NO_WORKER, "no live worker serves queue 'q' (stale heartbeats: w1, w2)")],
    ),
    "slots busy": (
        case(P, (w(busy=2),)),
        [(R.SLOTS_BUSY, "all 2 slots of the 1 worker(s) serving 'q' are busy")],
    ),
    "behind": (
        case(P, position=1, pending_total=3),
        [
            (R.BEHIND, "waiting its turn behind higher-priority or older tasks"),
            (R.POSITION, "position 2 of 3 in 'q'"),
        ],
    ),
    "next up, not in pending": (case(P), [(R.NEXT_UP, "next up")]),
    "scheduled": (
        case(TaskState.SCHEDULED, due_at_ms=NOW + 90_000),
        [(R.SCHEDULED, "scheduled: becomes due in 90 s")],
    ),
    "due exactly now, no worker": (
        case(TaskState.SCHEDULED, (), due_at_ms=NOW),
        [
            (R.DUE, "due, to be promoted by the next worker that polls the queue"),
            (R.NO_WORKER, "no live worker serves queue 'q'"),
        ],
    ),
    "due, served": (
        case(TaskState.SCHEDULED, due_at_ms=NOW - 5),
        [(R.DUE, "due, to be promoted by the next worker that polls the queue")],
    ),
    "retry due now, no error": (
        case(TaskState.RETRY, attempts=1, due_at_ms=NOW),
        [(R.RETRY, "retry after attempt 1 of 3 failed: ?; due now")],
    ),
    "retry later": (
        case(TaskState.RETRY, attempts=2, last_error="HTTP 503", due_at_ms=NOW + 1_000),
        [(R.RETRY, "retry after attempt 2 of 3 failed: HTTP 503; due in 1 s")],
    ),
    "waiting": (
        case(TaskState.WAITING, dependency_states=(("a|1", "gone"),), reason="held"),
        [(R.WAITING_ON_DEPENDENCIES, "waiting on dependencies: a|1 (gone)"), (R.NOTE, "held")],
    ),
    "release pending": (
        case(TaskState.WAITING),
        [(R.RELEASE_PENDING, "waiting on dependencies (none left: a release is pending in an outbox)")],
    ),
    "lease expired, served": (
        case(A, worker="w9", lease_expiry_ms=NOW - 3_000),
        [(R.LEASE_EXPIRED, "leased by w9, whose lease expired 3 s ago: the next dequeue on 'q' recovers it")],
    ),
    "lease expired, unserved": (
        case(A, (), worker="w9", lease_expiry_ms=NOW - 3_000),
        [
            (
                R.LEASE_EXPIRED,
                "leased by w9, whose lease expired 3 s ago: the next dequeue on 'q' recovers it, "
                "but no live worker serves 'q'",
            )
        ],
    ),
    "lease ends now, worker unknown": (
        case(A, worker="w9", lease_expiry_ms=NOW),
        [
            (
                R.WORKER_STALE,
                "leased by w9, which stopped heartbeating; recovery takes it when the lease expires in 0 s",
            )
        ],
    ),
    "no lease, stale worker": (
        case(A, (w(age_ms=600_000),), worker="w1"),
        [
            (
                R.WORKER_STALE,
                "leased by w1, which stopped heartbeating; recovery takes it when the lease expires in 0 s",
            )
        ],
    ),
    "stale worker, lease later": (
        case(A, (w(age_ms=600_000),), worker="w1", lease_expiry_ms=NOW + 9_000),
        [
            (
                R.WORKER_STALE,
                "leased by w1, which stopped heartbeating; recovery takes it when the lease expires in 9 s",
            )
        ],
    ),
    "prefetched": (
        case(A, (w(busy=1),), worker="w1", attempts=1, lease_expiry_ms=NOW + 9_000, reserved=True),
        [
            (
                R.AWAITING_SLOT,
                "prefetched by w1, waiting for one of its 2 slots (1 busy); attempt 2 of 3 starts then",
            )
        ],
    ),
    "running, no progress": (
        case(A, worker="w1", attempts=1, started_at_ms=NOW - 2_000),
        [(R.RUNNING, "running on w1 for 2 s (attempt 1 of 3)")],
    ),
    "running, progress without message": (
        case(A, worker="w1", attempts=1, started_at_ms=NOW, progress=40.4),
        [(R.RUNNING, "running on w1 for 0 s (attempt 1 of 3, 40%)")],
    ),
    "cancelled with reason": (
        case(TaskState.CANCELLED, reason="by operator"),
        [(R.FINISHED, "not running because it is cancelled: by operator")],
    ),
    "completed": (case(TaskState.COMPLETED), [(R.FINISHED, "not running because it is completed")]),
    "dead keeps its error, not the reason": (
        case(TaskState.DEAD, last_error="boom", reason="x"),
        [(R.FINISHED, "not running because it is dead: boom")],
    ),
    "unique held by another": (
        case(P, unique_key="k", unique_holder="t0"),
        [(R.NEXT_UP, "next up"), (R.UNIQUE_HELD, "unique key 'k' is held by task t0")],
    ),
    "unique of a finished task not reported": (
        case(TaskState.COMPLETED, unique_key="k", unique_holder="t0"),
        [(R.FINISHED, "not running because it is completed")],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_explanation(name: str) -> None:
    facts, expected = CASES[name]
    e = explain(facts)
    assert [(c.reason, c.text) for c in e.causes] == expected
    assert e.blocked == any(c.blocking for c in e.causes)
    assert (e.task_id, e.queue, e.state, e.position) == ("t1", "q", facts.info.state, facts.position)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 s"),
        (119_400, "119 s"),
        (119_999, "120 s"),
        (120_000, "2 min"),
        (5_400_000, "90 min"),
        (7_199_000, "120 min"),
        (7_200_000, "2.0 h"),
        (9_000_000, "2.5 h"),
        (36_185_000, "10.1 h"),
    ],
)
def test_ago(ms: int, text: str) -> None:
    assert _ago(ms) == text
