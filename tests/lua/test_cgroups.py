"""Concurrency groups in the scripts (pick_by_group, cgroup_hold, cgroup_free in _lib.lua).

dequeue: with group limits, a pending task whose group holds its limit of live leases (members
of its lease set scored after now) stays pending and the next is considered; a lapsed lease does
not count (a dead worker's slots return); each grouped task leased joins its group's set with
its lease. Without limits, grouped tasks are leased as ever (and still counted).
extend/ack/fail/release/throttle: the lease set follows the task (refreshed, or left)."""

from __future__ import annotations

from collections.abc import Callable

from engine import ops
from engine.backend import Call
from engine.worker.protocol import throttle_call
from tests.lua.harness import ABSENT, RECENT, SETTINGS, Case, H, Later, Z, cases, first_call, run_case
from tests.lua.protocol import (
    HELD,
    TOKEN,
    WORKER,
    ack_call,
    defer_call,
    dequeue_call,
    extend_call,
    fail_call,
    release_call,
)
from tests.lua.test_dequeue import LEASE_MS, PENDING, SHIFT, STARTED, entry

G = {**PENDING, "grp": "c42"}
OTHER = {**PENDING, "grp": "c7"}
ORDER = {"pending": Z({"a": 50 * SHIFT + 1, "b": 50 * SHIFT + 2, "c": 50 * SHIFT + 3})}
UNPLACED: dict[str, tuple[str, ...]] = {"a": (), "b": (), "c": ()}
WAITING = {"state": "pending", "worker": ABSENT}

DEQUEUE = cases(
    Case(
        "fair queue: a lease moves the clock to its tag; a group's last task leased drops its tag",
        before={"a": G, "b": OTHER},
        places=UNPLACED,
        keys={
            "pending": Z({"a": 50 * SHIFT + 2024, "b": 50 * SHIFT + 3048}),
            "fair": H({"on": "1", "clock": "1000", "t:c42": "2024", "t:c7": "9000"}),
        },
        args={"max_tasks": 2},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": STARTED},
        keys_after={"fair": H({"on": "1", "clock": "3048", "t:c7": "9000"})},
    ),
    Case(
        "limit 1 per group: the second task of a group is skipped, the next group's leased",
        before={"a": G, "b": G, "c": OTHER},
        places=UNPLACED,
        keys={**ORDER, "cglimits": H({"*": "1"})},
        args={"max_tasks": 3},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("c", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": WAITING, "c": STARTED},
        places_after={"b": ("pending",)},
        scores_after={("pending", "b"): 50 * SHIFT + 2},
        keys_after={"cg:c42": Z({"a": Later(LEASE_MS)}), "cg:c7": Z({"c": Later(LEASE_MS)})},
    ),
    Case(
        "a group at its limit of live leases: nothing of it leased",
        before={"a": G, "b": G},
        places={"a": (), "b": ()},
        keys={
            "pending": Z({"a": 1, "b": 2}),
            "cglimits": H({"c42": "2"}),
            "cg:c42": Z({"x": "now+9000", "y": "now+9000"}),
        },
        args={"max_tasks": 2},
        reply=[RECENT],
        after={"a": WAITING, "b": WAITING},
        places_after={"a": ("pending",), "b": ("pending",)},
    ),
    Case(
        "a lapsed lease does not count: a dead worker's slot is free again",
        before={"a": G},
        keys={"cglimits": H({"c42": "1"}), "cg:c42": Z({"x": "now-1"})},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"cg:c42": Z({"x": None, "a": Later(LEASE_MS)})},
    ),
    Case(
        "a pending task's own leftover entry (its lease ran out) does not hold its group back",
        before={"a": G},
        keys={"cglimits": H({"*": "1"}), "cg:c42": Z({"a": "now+9000"})},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"cg:c42": Z({"a": Later(LEASE_MS)})},
    ),
    Case(
        "a group's own limit wins over *",
        before={"a": G, "b": G, "c": G},
        places=UNPLACED,
        keys={**ORDER, "cglimits": H({"*": "1", "c42": "2"})},
        args={"max_tasks": 3},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": STARTED, "c": WAITING},
        places_after={"c": ("pending",)},
    ),
    Case(
        "a task without a group is never held back",
        before={"a": G, "b": PENDING},
        places={"a": (), "b": ()},
        keys={"pending": Z({"a": 1, "b": 2}), "cglimits": H({"*": "1"}), "cg:c42": Z({"x": "now+9000"})},
        args={"max_tasks": 2},
        reply=[RECENT, *entry("b", 1, "0", f"{WORKER}#1")],
        after={"a": WAITING, "b": STARTED},
        places_after={"a": ("pending",)},
    ),
    Case(
        "reserved tasks count too (they hold a lease)",
        before={"a": G, "b": G},
        places={"a": (), "b": ()},
        keys={"pending": Z({"a": 1, "b": 2}), "cglimits": H({"*": "1"})},
        args={"max_tasks": 2, "start_now": 0},
        reply=[RECENT, *entry("a", 0, "1", f"{WORKER}#1")],
        after={"a": {"state": "active", "reserved": "1"}, "b": WAITING},
        places_after={"b": ("pending",)},
        keys_after={"cg:c42": Z({"a": Later(LEASE_MS)})},
    ),
    Case(
        "no group limits: grouped tasks leased as ever, and counted",
        before={"a": G, "b": G},
        places={"a": (), "b": ()},
        keys={"pending": Z({"a": 1, "b": 2})},
        args={"max_tasks": 2},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": STARTED},
        keys_after={"cg:c42": Z({"a": None, "b": None})},
    ),
)


@DEQUEUE
def test_dequeue_with_concurrency_groups(redis_url: str, case: Case) -> None:
    a = {"max_tasks": 1, "start_now": None, **case.args}
    run_case(
        redis_url,
        case,
        dequeue_call(SETTINGS, "q", a["max_tasks"], LEASE_MS, WORKER, start_now=a["start_now"]),
    )


HELD_G = {**HELD, "grp": "c42", "attempts": "1", "max_retry": "3", "lease": "now+1000", "type": "t"}
IN_GROUP = {"cg:c42": Z({"a": "now+1000", "z": "now+5000"})}

ENDS = cases(
    Case(
        "extend: the group's lease follows",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply=[[], []],
        after={"a": {"lease": Later(LEASE_MS)}},
        keys_after={"cg:c42": Z({"a": Later(LEASE_MS), "z": None})},
        args={"call": "extend"},
    ),
    Case(
        "ack: leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply=[[], []],
        after={"a": {"state": "completed"}},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "ack"},
    ),
    Case(
        "fail: leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply="retry",
        after={"a": {"state": "retry"}},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "fail"},
    ),
    Case(
        "release: leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply=[],
        after={"a": {"state": "pending"}},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "release"},
    ),
    Case(
        "throttle: leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply="throttled",
        after={"a": {"state": "pending"}},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "throttle"},
    ),
    Case(
        "defer (an unknown type): leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply="deferred",
        after={"a": {"state": "scheduled"}},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "defer"},
    ),
    Case(
        "delete: leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply=["a"],
        after={"a": None},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "delete"},
    ),
    Case(
        "quarantine: leaves its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply=["a"],
        after={"a": {"state": "quarantined"}},
        keys_after={"cg:c42": Z({"z": None})},
        args={"call": "quarantine"},
    ),
    Case(
        "a stale token: stays in its group",
        before={"a": HELD_G},
        keys=IN_GROUP,
        reply=[["a"], []],
        after={"a": {"state": "active"}},
        keys_after={"cg:c42": Z({"a": "now+1000", "z": None})},
        args={"call": "ack", "token": f"{WORKER}#9"},
    ),
)


@ENDS
def test_the_lease_set_follows_the_task(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    builders: dict[str, Callable[[], Call]] = {
        "extend": lambda: extend_call(SETTINGS, "q", [("a", token)], LEASE_MS),
        "ack": lambda: ack_call(SETTINGS, "q", [("a", token, "")]),
        "fail": lambda: fail_call(SETTINGS, "q", "a", token, "boom", "", 1.0),
        "release": lambda: release_call(SETTINGS, "q", [("a", token)], "bye"),
        "throttle": lambda: throttle_call(SETTINGS, "q", "a", token, 1.0, "429"),
        "defer": lambda: defer_call(SETTINGS, "q", "a", token, 60.0, 3600.0, "unknown", "unknown"),
        "delete": lambda: first_call(ops.delete(SETTINGS, "q", ["a"])),
        "quarantine": lambda: first_call(ops.quarantine(SETTINGS, "q", ["a"])),
    }
    run_case(redis_url, case, builders[case.args["call"]]())
