"""dequeue.lua: due scheduled and retry tasks become pending; leases that ran out are
recovered (back to pending, a reserved task uncharged; dead once its attempts are spent;
cancelled when a cancel was requested); then up to N pending tasks are leased, in priority
order, each a new delivery (its 'dlv' bumped, its token in the reply), the first ``start_now``
charged an attempt and the rest reserved. A paused queue leases nothing. A copy of a request
sent again after a lost reply returns the first copy's tasks (its receipt). A worker that drains
the queue with slots to spare registers for hand-offs."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import redis

from engine.backend import SyncBackend
from tests.lua.harness import (
    ABSENT,
    ANY,
    QK,
    RECENT,
    SETTINGS,
    TTL,
    Case,
    H,
    Json,
    Later,
    Parts,
    Z,
    cases,
    run_case,
)
from tests.lua.protocol import WORKER, dequeue_call

LEASE_MS = 30_000
SHIFT = 2**40
TASK = {"type": "t", "payload": '{"n":1}', "priority": "50", "max_retry": "3", "timeout": "60000"}
PENDING = {**TASK, "state": "pending", "attempts": "0"}
LEASED = {"state": "active", "worker": WORKER, "lease": Later(LEASE_MS)}
STARTED = {**LEASED, "attempts": "1", "started": RECENT, "reserved": ABSENT, "dlv": "1"}
RESERVED = {**LEASED, "attempts": "0", "started": ABSENT, "reserved": "1", "dlv": "1"}
DIED_FP = hashlib.sha1(b"t\nworker died during attempt <n> (lease expired)").hexdigest()[:16]
"""The failure group of type ``t``'s tasks buried by lease recovery (join_group in _lib.lua)."""


def entry(task_id: str, attempts: int, reserved: str, token: str, **fields: Any) -> list[Any]:
    """One task of the reply: id, type, payload, priority, max_retry, timeout, attempts, meta,
    schema version, reserved, token."""
    f = {**TASK, "meta": "", "v": "1", **fields}
    return [
        task_id,
        f["type"],
        f["payload"],
        f["priority"],
        f["max_retry"],
        f["timeout"],
        attempts,
        f["meta"],
        f["v"],
        reserved,
        token,
    ]


def expired(**fields: Any) -> dict[str, Any]:
    """A task whose holder (w0) died: its lease ran out a second ago."""
    return {**TASK, "state": "active", "worker": "w0", "lease": "now-1000", "dlv": "1", **fields}


TABLE = cases(
    # ------------------------------------------------------------------------- leasing
    Case(
        "pending: leased, started as attempt 1, delivery 1",
        before={"a": PENDING},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        scores_after={("active", "a"): Later(LEASE_MS)},
        keys_after={"h:a": [Json([RECENT, "active", WORKER])], "receipt:w1": ABSENT, "idle": ABSENT},
    ),
    Case(
        "a task delivered before: the next delivery number, attempts counted on",
        before={"a": {**PENDING, "attempts": "2", "dlv": "4"}},
        reply=[RECENT, *entry("a", 3, "0", f"{WORKER}#5")],
        after={"a": {**STARTED, "attempts": "3", "dlv": "5"}},
    ),
    Case(
        "start_now 0: leased reserved, not charged",
        before={"a": {**PENDING, "attempts": "1"}},
        args={"start_now": 0},
        reply=[RECENT, *entry("a", 1, "1", f"{WORKER}#1")],
        after={"a": {**RESERVED, "attempts": "1"}},
        keys_after={"h:a": ABSENT},
    ),
    Case(
        "max 2, start_now 1: the first starts, the second is reserved",
        before={"a": PENDING, "b": PENDING},
        places={"a": (), "b": ()},
        keys={"pending": Z({"a": 50 * SHIFT + 1, "b": 50 * SHIFT + 2})},
        args={"max_tasks": 2, "start_now": 1},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 0, "1", f"{WORKER}#1")],
        after={"a": STARTED, "b": RESERVED},
    ),
    Case(
        "priority order: the lowest score first, the others stay pending",
        before={"a": {**PENDING, "priority": "50"}, "b": {**PENDING, "priority": "10"}, "c": PENDING},
        places={"a": (), "b": (), "c": ()},
        keys={"pending": Z({"a": 50 * SHIFT + 1, "b": 10 * SHIFT + 2, "c": 50 * SHIFT + 3})},
        reply=[RECENT, *entry("b", 1, "0", f"{WORKER}#1", priority="10")],
        after={"b": STARTED, "a": {"state": "pending"}, "c": {"state": "pending"}},
        places_after={"a": ("pending",), "c": ("pending",)},
    ),
    Case(
        "a hash without a type (a buggy client): leased, for the worker to bury",
        before={"a": {"state": "pending", "payload": "{}"}},
        reply=[RECENT, "a", None, "{}", None, None, None, 1, "", "1", "0", f"{WORKER}#1"],
        after={"a": {"state": "active", "attempts": "1", "dlv": "1"}},
    ),
    Case(
        "a pending entry whose hash is gone: dropped",
        before={"a": {}},
        places={"a": ("pending",)},
        reply=[RECENT],
        after={"a": None},
    ),
    Case(
        "an earlier attempt's progress is cleared",
        before={"a": {**PENDING, "progress": "70", "pmsg": "nearly"}},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": {**STARTED, "progress": ABSENT, "pmsg": ABSENT}},
    ),
    Case(
        "paused: nothing leased",
        before={"a": PENDING},
        keys={"paused": "1"},
        reply=[RECENT],
        after={"a": {"state": "pending", "worker": ABSENT}},
    ),
    Case(
        "max 0: nothing leased",
        before={"a": PENDING},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={"a": {"state": "pending"}},
    ),
    # ------------------------------------------------------------------------- promotion
    *[
        Case(
            f"{state}, due: pending, then leased",
            before={"a": {**TASK, "state": state, "due": "now-1000", "attempts": "1"}},
            reply=[RECENT, *entry("a", 2, "0", f"{WORKER}#1")],
            after={"a": {**STARTED, "attempts": "2"}},
        )
        for state in ("scheduled", "retry")
    ],
    *[
        Case(
            f"{state}, due, max 0: pending at its priority",
            before={"a": {**TASK, "state": state, "due": "now-1000", "priority": "7"}},
            keys={"seq": "9"},
            args={"max_tasks": 0},
            reply=[RECENT],
            after={"a": {"state": "pending"}},
            scores_after={("pending", "a"): 7 * SHIFT + 10},
            keys_after={"h:a": [Json([RECENT, "pending", "due"])]},
        )
        for state in ("scheduled", "retry")
    ],
    *[
        Case(
            f"{state}, not yet due: stays",
            before={"a": {**TASK, "state": state, "due": "now+60000"}},
            reply=[RECENT],
            after={"a": {"state": state}},
            scores_after={(state, "a"): "now+60000"},
        )
        for state in ("scheduled", "retry")
    ],
    Case(
        "scheduled whose hash is gone: dropped from the set",
        before={"a": {}},
        places={"a": ("scheduled",)},
        keys={"scheduled": Z({"a": "now-1000"})},
        reply=[RECENT],
        after={"a": None},
    ),
    Case(
        "promotion and recovery stop at the maintenance limit",
        before={
            "a": {**TASK, "state": "scheduled", "due": "now-3000"},
            "b": {**TASK, "state": "scheduled", "due": "now-2000"},
        },
        args={"max_tasks": 0, "maintenance_limit": 1},
        reply=["more"],  # the scan filled its limit: the worker asks again at once
        after={"a": {"state": "pending"}, "b": {"state": "scheduled"}},
    ),
    Case(
        "maintenance limit 0: nothing promoted or recovered, pending tasks still leased",
        before={
            "a": {**TASK, "state": "scheduled", "due": "now-3000"},
            "b": expired(attempts="1"),
            "c": PENDING,
        },
        args={"max_tasks": 1, "maintenance_limit": 0},
        reply=[RECENT, *entry("c", 1, "0", f"{WORKER}#1")],
        after={"a": {"state": "scheduled"}, "b": {"state": "active", "worker": "w0"}, "c": STARTED},
    ),
    # ------------------------------------------------------------------------- recovery
    Case(
        "lease ran out, attempts left: pending, the death noted",
        before={"a": expired(attempts="2")},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={
            "a": {
                "state": "pending",
                "lease": ABSENT,
                "attempts": "2",
                "error": "worker died during attempt 2 (lease of w0 expired)",
            }
        },
    ),
    Case(
        "lease ran out on the last attempt allowed (attempts = max_retry + 1): dead, in its group",
        before={"a": expired(attempts="4")},
        keys={"h:a": ['[0,"active","w0"]']},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={
            "a": {
                "state": "dead",
                "finished": RECENT,
                "lease": ABSENT,
                "fp": ANY,
                "error": "worker died during attempt 4 (lease of w0 expired)",
            }
        },
        scores_after={("dead", "a"): RECENT},
        keys_after={"failures": H({DIED_FP: ANY}), f"fp:{DIED_FP}": Z({"a": RECENT}), "t:a": TTL(True)},
    ),
    Case(
        "lease ran out on attempt max_retry: still pending",
        before={"a": expired(attempts="3")},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={"a": {"state": "pending"}},
    ),
    Case(
        "reserved, lease ran out before it started: pending, not charged",
        before={"a": expired(attempts="1", reserved="1")},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={
            "a": {
                "state": "pending",
                "attempts": "1",
                "reserved": ABSENT,
                "worker": ABSENT,
                "lease": ABSENT,
                "error": ABSENT,
            }
        },
    ),
    Case(
        "reserved on its last attempt, lease ran out: pending, not buried",
        before={"a": expired(attempts="4", reserved="1")},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={"a": {"state": "pending", "attempts": "4"}},
    ),
    Case(
        "cancel requested, lease ran out: cancelled",
        before={"a": expired(attempts="1", cancel="1", fp="f1", unique="u")},
        keys={"fp:f1": Z({"a": "now"}), "unique:u": "a", "dependents:a": {"q|b"}},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={
            "a": {"state": "cancelled", "finished": RECENT, "cancel": ABSENT, "lease": ABSENT, "fp": ABSENT}
        },
        keys_after={"fp:f1": ABSENT, "unique:u": ABSENT, "depoutbox": Z({"a": RECENT}), "t:a": TTL(True)},
    ),
    Case(
        "a lease not yet run out: left to its holder",
        before={"a": {**expired(attempts="1"), "lease": "now+5000"}},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={"a": {"state": "active", "worker": "w0", "lease": "now+5000"}},
    ),
    Case(
        "an active entry whose hash is gone: dropped",
        before={"a": {}},
        places={"a": ("active",)},
        keys={"active": Z({"a": "now-1000"})},
        args={"max_tasks": 0},
        reply=[RECENT],
        after={"a": None},
    ),
    Case(
        "recovered and leased again in the same call: a new delivery of the same task",
        before={"a": expired(attempts="1")},
        reply=[RECENT, *entry("a", 2, "0", f"{WORKER}#2")],
        after={"a": {**STARTED, "attempts": "2", "dlv": "2"}},
    ),
    # ------------------------------------------------------------------------- receipts
    Case(
        "with a request id: a receipt of the leased ids, for a lease",
        before={"a": PENDING},
        args={"request_id": "r1"},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"receipt:w1": TTL(True, LEASE_MS)},
    ),
    Case(
        "sent again after a lost reply: the same tasks, leased once",
        before={"a": PENDING, "b": PENDING},
        places={"a": (), "b": ()},
        keys={"pending": Z({"a": 1, "b": 2})},
        args={"request_id": "r1"},
        sent=2,
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": {"state": "pending", "dlv": ABSENT}},
        places_after={"b": ("pending",)},
    ),
    Case(
        "sent again, a reserved task: still reserved, same token",
        before={"a": PENDING},
        args={"request_id": "r1", "start_now": 0},
        sent=2,
        reply=[RECENT, *entry("a", 0, "1", f"{WORKER}#1")],
        after={"a": RESERVED},
    ),
    Case(
        "a receipt of another request: a new lease",
        before={
            "a": PENDING,
            "b": {**TASK, "state": "active", "worker": WORKER, "lease": "now+30000", "dlv": "1"},
        },
        keys={"receipt:w1": '["r0","b"]'},
        args={"request_id": "r1"},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"receipt:w1": Json(["r1", "a"])},
    ),
    Case(
        "a receipt whose task's lease ran out: that task is not returned",
        before={"b": {**expired(attempts="1"), "worker": WORKER}},
        keys={"receipt:w1": '["r1","b"]'},
        args={"request_id": "r1"},
        reply=[RECENT],
        after={"b": {"state": "active", "lease": "now-1000"}},
    ),
    Case(
        "a receipt whose task moved on to another worker: not returned",
        before={"b": {**TASK, "state": "active", "worker": "w2", "lease": "now+30000", "dlv": "2"}},
        keys={"receipt:w1": '["r1","b"]'},
        args={"request_id": "r1"},
        reply=[RECENT],
        after={"b": {"worker": "w2"}},
    ),
    Case(
        "no request id: no receipt",
        before={"a": PENDING},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"receipt:w1": ABSENT},
    ),
    Case(
        "nothing leased: no receipt",
        before={},
        args={"request_id": "r1"},
        reply=[RECENT],
        keys_after={"receipt:w1": ABSENT},
    ),
    # ------------------------------------------------------------------------- hand-off
    Case(
        "drained with slots to spare: registered for hand-offs (free:deadline:lease)",
        before={"a": PENDING},
        args={"max_tasks": 4, "handoff_ms": 2000},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"idle": H({WORKER: Parts((3, Later(2000), LEASE_MS))})},
    ),
    Case(
        "tasks already in its inbox count against the free slots",
        before={},
        keys={"inbox:w1": ["x", "y"]},
        args={"max_tasks": 4, "handoff_ms": 2000},
        reply=[RECENT],
        keys_after={"idle": H({WORKER: Parts((2, Later(2000), LEASE_MS))})},
    ),
    Case(
        "an inbox as full as the slots: the registration is withdrawn",
        before={},
        keys={"inbox:w1": ["x", "y"], "idle": H({WORKER: "2:0:30000"})},
        args={"max_tasks": 2, "handoff_ms": 2000},
        reply=[RECENT],
        keys_after={"idle": ABSENT},
    ),
    Case(
        "more pending than it takes: no registration, a stale one withdrawn",
        before={"a": PENDING, "b": PENDING, "c": PENDING},
        places={"a": (), "b": (), "c": ()},
        keys={"pending": Z({"a": 1, "b": 2, "c": 3}), "idle": H({WORKER: "1:0:30000", "w9": "1:0:1"})},
        args={"max_tasks": 1, "handoff_ms": 2000},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": {"state": "pending"}, "c": {"state": "pending"}},
        places_after={"b": ("pending",), "c": ("pending",)},
        keys_after={"idle": H({"w9": "1:0:1"})},
    ),
    Case(
        "took as many as it asked for, one a dropped entry: more may be pending, no registration",
        before={"a": PENDING, "x": {}, "b": PENDING},
        places={"a": (), "x": (), "b": ()},
        keys={"pending": Z({"a": 1, "x": 2, "b": 3}), "idle": H({WORKER: "1:0:30000"})},
        args={"max_tasks": 2, "start_now": 2, "handoff_ms": 2000},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "x": None, "b": {"state": "pending"}},
        places_after={"b": ("pending",)},
        keys_after={"idle": ABSENT},
    ),
    Case(
        "paused: the registration is withdrawn",
        before={},
        keys={"paused": "1", "idle": H({WORKER: "1:0:30000"})},
        args={"max_tasks": 1, "handoff_ms": 2000},
        reply=[RECENT],
        keys_after={"idle": ABSENT},
    ),
    Case(
        "no hand-off asked: nothing registered",
        before={},
        args={"max_tasks": 4},
        reply=[RECENT],
        keys_after={"idle": ABSENT},
    ),
    # an idle worker's poll (quiet) leaves an unchanged registration alone while it has more than
    # half its time left (test_a_quiet_poll_leaves_a_fresh_registration_alone); otherwise it writes
    Case(
        "a quiet poll renews a registration with less than half its time left",
        before={},
        keys={"idle": H({WORKER: "4:1:30000"})},
        args={"max_tasks": 4, "handoff_ms": 2000, "quiet": True},
        reply=[RECENT],
        keys_after={"idle": H({WORKER: Parts((4, Later(2000), LEASE_MS))})},
    ),
    Case(
        "a quiet poll writes a changed free count",
        before={},
        keys={"idle": H({WORKER: "3:9999999999999:30000"})},
        args={"max_tasks": 4, "handoff_ms": 2000, "quiet": True},
        reply=[RECENT],
        keys_after={"idle": H({WORKER: Parts((4, Later(2000), LEASE_MS))})},
    ),
    Case(
        "a quiet poll writes a changed lease",
        before={},
        keys={"idle": H({WORKER: "4:9999999999999:60000"})},
        args={"max_tasks": 4, "handoff_ms": 2000, "quiet": True},
        reply=[RECENT],
        keys_after={"idle": H({WORKER: Parts((4, Later(2000), LEASE_MS))})},
    ),
    Case(
        "a quiet poll brings a deadline beyond its time back (a clock that stepped back)",
        before={},
        keys={"idle": H({WORKER: "4:9999999999999:30000"})},
        args={"max_tasks": 4, "handoff_ms": 2000, "quiet": True},
        reply=[RECENT],
        keys_after={"idle": H({WORKER: Parts((4, Later(2000), LEASE_MS))})},
    ),
    Case(
        "a quiet poll registers a worker that has no registration",
        before={},
        args={"max_tasks": 4, "handoff_ms": 2000, "quiet": True},
        reply=[RECENT],
        keys_after={"idle": H({WORKER: Parts((4, Later(2000), LEASE_MS))})},
    ),
    Case(
        "a quiet poll that finds the queue paused withdraws the registration",
        before={},
        keys={"paused": "1", "idle": H({WORKER: "4:9999999999999:30000"})},
        args={"max_tasks": 4, "handoff_ms": 2000, "quiet": True},
        reply=[RECENT],
        keys_after={"idle": ABSENT},
    ),
)


@TABLE
def test_dequeue(redis_url: str, case: Case) -> None:
    args = {
        "max_tasks": 1,
        "start_now": None,
        "maintenance_limit": 100,
        "handoff_ms": 0,
        "request_id": "",
        "quiet": False,
        **case.args,
    }
    call = dequeue_call(
        SETTINGS,
        "q",
        args["max_tasks"],
        LEASE_MS,
        WORKER,
        maintenance_limit=args["maintenance_limit"],
        start_now=args["start_now"],
        handoff_ms=args["handoff_ms"],
        request_id=args["request_id"],
        quiet=args["quiet"],
    )
    run_case(redis_url, case, call)


def _registration_after_polls(redis_url: str, quiet: bool) -> tuple[str, str]:
    """The worker's registration after its first poll and after a second one 20 ms later."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    call = dequeue_call(SETTINGS, "q", 4, LEASE_MS, WORKER, handoff_ms=2000, quiet=quiet)
    try:
        backend.execute(call)
        first = str(r.hget(QK.idle, WORKER) or "")
        time.sleep(0.02)
        backend.execute(call)
        return first, str(r.hget(QK.idle, WORKER) or "")
    finally:
        backend.close()
        r.close()


def test_a_quiet_poll_leaves_a_fresh_registration_alone(redis_url: str) -> None:
    first, second = _registration_after_polls(redis_url, quiet=True)
    assert first.startswith("4:") and second == first  # not written again: same deadline


def test_a_poll_that_is_not_quiet_renews_the_registration(redis_url: str) -> None:
    first, second = _registration_after_polls(redis_url, quiet=False)
    assert first.startswith("4:") and second.startswith("4:")
    assert int(second.split(":")[1]) > int(first.split(":")[1])
