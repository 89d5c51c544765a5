"""Batching in dequeue.lua (batch_pick in _lib.lua): a queue with a batch hash (type ->
'<max_size>:<max_delay ms>') leases one ready batch per call, every task of it started whatever
the worker asked for (none reserved, no hand-off registered): the first batch in pending order
that is full, or whose oldest task's 'due' time is max_delay past. Tasks of one batch share
their type and group. A type without an entry goes alone at once. With no batch ready, nothing
is leased and the reply says when the oldest is due: ``[[now, ms, 'batch']]``."""

from __future__ import annotations

from typing import Any

from tests.lua.harness import ABSENT, ANY, RECENT, SETTINGS, Case, H, Z, cases, run_case
from tests.lua.protocol import WORKER, dequeue_call
from tests.lua.test_dequeue import LEASE_MS, PENDING, SHIFT, STARTED, entry

WAITING = {"state": "pending", "worker": ABSENT}
OLD = {**PENDING, "due": "now-10000"}
"""Due ten seconds ago: past a 5 s max_delay."""
NEW = {**PENDING, "due": "now"}
T1 = "1"
"""The token of a first delivery (``<worker>#1``)."""


def order(*ids: str) -> dict[str, Any]:
    return {"pending": Z({task_id: 50 * SHIFT + n for n, task_id in enumerate(ids, 1)})}


def leased(*ids: str, **fields: Any) -> list[Any]:
    return [x for task_id in ids for x in entry(task_id, 1, "0", f"{WORKER}#{T1}", **fields)]


BATCH = {"batches": H({"t": "3:5000"})}
"""Type t: batches of 3, or fewer once the oldest waited 5 s."""

DEQUEUE = cases(
    Case(
        "a full batch: leased together, all started, whatever the worker asked for",
        before={"a": NEW, "b": NEW, "c": NEW, "d": NEW},
        places={k: () for k in "abcd"},
        keys={**order("a", "b", "c", "d"), **BATCH},
        args={"max_tasks": 1, "start_now": 1, "handoff_ms": 5000},
        reply=[RECENT, *leased("a", "b", "c")],
        after={"a": STARTED, "b": STARTED, "c": STARTED, "d": WAITING},
        places_after={"d": ("pending",)},
        keys_after={"idle": ABSENT},
    ),
    Case(
        "not full and not due: nothing leased, the wait till the oldest is due",
        before={"a": NEW, "b": NEW},
        places={"a": (), "b": ()},
        keys={**order("a", "b"), **BATCH},
        args={"max_tasks": 4},
        reply=[[RECENT, ANY, "batch"]],
        after={"a": WAITING, "b": WAITING},
        places_after={"a": ("pending",), "b": ("pending",)},
    ),
    Case(
        "not full but its oldest waited max_delay: the partial batch goes",
        before={"a": OLD, "b": NEW},
        places={"a": (), "b": ()},
        keys={**order("a", "b"), **BATCH},
        args={"max_tasks": 1},
        reply=[RECENT, *leased("a", "b")],
        after={"a": STARTED, "b": STARTED},
    ),
    Case(
        "one batch per group: a full group goes past a forming one ahead of it",
        before={
            "a": {**NEW, "grp": "x"},
            "b": {**NEW, "grp": "y"},
            "c": {**NEW, "grp": "y"},
            "d": {**NEW, "grp": "y"},
        },
        places={k: () for k in "abcd"},
        keys={**order("a", "b", "c", "d"), **BATCH},
        args={"max_tasks": 1},
        reply=[RECENT, *leased("b", "c", "d")],
        after={"a": WAITING, "b": STARTED, "c": STARTED, "d": STARTED},
        places_after={"a": ("pending",)},
    ),
    Case(
        "one batch per type: a type without an entry goes alone at once",
        before={"a": NEW, "b": {**NEW, "type": "u"}, "c": NEW},
        places={k: () for k in "abc"},
        keys={**order("a", "b", "c"), **BATCH},
        args={"max_tasks": 4},
        reply=[RECENT, *leased("b", type="u")],
        after={"a": WAITING, "b": STARTED, "c": WAITING},
        places_after={"a": ("pending",), "c": ("pending",)},
    ),
    Case(
        "no free slot (start_now 0): nothing leased, not even reserved",
        before={"a": OLD},
        keys={**BATCH},
        args={"max_tasks": 2, "start_now": 0},
        reply=[RECENT],
        after={"a": WAITING},
    ),
    Case(
        "a rate limit on a batched queue is not applied (a batch goes whole)",
        before={"a": OLD},
        keys={**BATCH, "ratelimit": H({"rate": "1", "period": "60000", "tat": "now+60000"})},
        reply=[RECENT, *leased("a")],
        after={"a": STARTED},
    ),
    Case(
        "without a batch hash: leased as ever (one, the other reserved)",
        before={"a": NEW, "b": NEW},
        places={"a": (), "b": ()},
        keys=order("a", "b"),
        args={"max_tasks": 2, "start_now": 1},
        reply=[RECENT, *leased("a"), *entry("b", 0, "1", f"{WORKER}#{T1}")],
        after={"a": STARTED},
    ),
    Case(
        "a junk entry counts as a batch of one, due at once",
        before={"a": NEW, "b": NEW},
        places={"a": (), "b": ()},
        keys={**order("a", "b"), "batches": H({"t": "lots"})},
        args={"max_tasks": 2},
        reply=[RECENT, *leased("a")],
        after={"a": STARTED, "b": WAITING},
    ),
)


@DEQUEUE
def test_dequeue_of_a_batched_queue(redis_url: str, case: Case) -> None:
    a = {"max_tasks": 1, "start_now": None, "handoff_ms": 0, **case.args}
    run_case(
        redis_url,
        case,
        dequeue_call(
            SETTINGS,
            "q",
            a["max_tasks"],
            LEASE_MS,
            WORKER,
            start_now=a["start_now"],
            handoff_ms=a["handoff_ms"],
        ),
    )
