"""requeue.lua: finished or parked tasks back to pending with a fresh attempt count."""

from __future__ import annotations

from engine import ops
from tests.lua.harness import ABSENT, PAST, RECENT, SETTINGS, TTL, Case, Json, Z, cases, first_call, run_case

REQUEUED = {"state": "pending", "attempts": "0", "due": RECENT, "requeues": "1"}

FROM_STATES = [
    Case(
        f"{state} -> pending",
        before={"a": {"state": state, "attempts": "3", "due": PAST}},
        reply=[["a"], []],
        after={"a": REQUEUED},
    )
    for state in ("dead", "retry", "scheduled", "cancelled", "completed", "waiting")
]

SKIPPED = [
    Case(
        f"{state} is left alone",
        before={"a": {"state": state, "attempts": "1", "lease": "now+60000"}},
        reply=[[], []],
        after={"a": {"state": state, "attempts": "1", "requeues": ABSENT}},
    )
    for state in ("pending", "active", "quarantined")
]

IMPLIED = [
    Case(
        "completed, its completion implied ('entered'): written down before it moves on",
        before={"a": {"state": "completed", "entered": "pending", "finished": "1000"}},
        keys={"h:a": ['[5,"active","w1"]']},
        reply=[["a"], []],
        after={"a": REQUEUED},
        keys_after={
            "h:a": [
                Json([RECENT, "pending", "requeued (was completed)"]),
                Json([1000, "completed", ""]),
                Json([5, "active", "w1"]),
            ]
        },
    ),
    Case(
        "completed, an older hash (no 'entered'): its pushed completion is not doubled",
        before={"a": {"state": "completed", "finished": "1000"}},
        keys={"h:a": ['[1000,"completed",""]']},
        reply=[["a"], []],
        after={"a": REQUEUED},
        keys_after={
            "h:a": [Json([RECENT, "pending", "requeued (was completed)"]), Json([1000, "completed", ""])]
        },
    ),
    Case(
        "completed, implied, a junk newest history entry: requeued all the same",
        before={"a": {"state": "completed", "entered": "pending", "finished": "1000"}},
        keys={"h:a": ["not json"]},
        reply=[["a"], []],
        after={"a": REQUEUED},
        keys_after={
            "h:a": [
                Json([RECENT, "pending", "requeued (was completed)"]),
                Json([1000, "completed", ""]),
                "not json",
            ]
        },
    ),
    Case(
        "completed, restored from quarantine (its completion written down): not doubled",
        before={"a": {"state": "completed", "entered": "pending", "finished": "1000"}},
        keys={"h:a": ['[2000,"completed","restored from quarantine"]']},
        reply=[["a"], []],
        after={"a": REQUEUED},
        keys_after={
            "h:a": [
                Json([RECENT, "pending", "requeued (was completed)"]),
                Json([2000, "completed", "restored from quarantine"]),
            ]
        },
    ),
]

TABLE = cases(
    *FROM_STATES,
    *IMPLIED,
    *SKIPPED,
    Case("a missing id is skipped, no hash made", before={}, reply=[[], []], after={"a": None}),
    Case(
        "run fields are cleared",
        before={
            "a": {
                "state": "dead",
                "finished": "now",
                "lease": "now",
                "cancel": "1",
                "reason": "x",
                "result": "1",
                "progress": "50",
                "pmsg": "half",
                "reserved": "1",
                "worker": "w1",
                "error": "boom",
            }
        },
        reply=[["a"], []],
        after={
            "a": {
                "state": "pending",
                **{
                    f: ABSENT
                    for f in (
                        "finished",
                        "lease",
                        "cancel",
                        "reason",
                        "result",
                        "progress",
                        "pmsg",
                        "reserved",
                        "worker",
                    )
                },
                "error": "boom",
            }
        },
    ),
    Case(
        "requeues counts up",
        before={"a": {"state": "dead", "requeues": "2"}},
        reply=[["a"], []],
        after={"a": {"state": "pending", "requeues": "3"}},
    ),
    Case(
        "pending score is priority then sequence",
        before={"a": {"state": "dead", "priority": "10"}},
        keys={"seq": "41"},
        reply=[["a"], []],
        after={"a": {"state": "pending"}},
        keys_after={"seq": "42"},
        scores_after={("pending", "a"): 10 * 2**40 + 42},
    ),
    Case(
        "an expiring finished task is kept for good",
        before={"a": {"state": "completed"}},
        keys={"h:a": ['[0,"completed",""]'], "dependents:a": {"q|b"}},
        expiring=("t:a", "h:a", "dependents:a"),
        reply=[["a"], []],
        after={"a": {"state": "pending"}},
        keys_after={"t:a": TTL(False), "h:a": TTL(False), "dependents:a": TTL(False)},
    ),
    Case(
        "a waiting task forgets its dependencies",
        before={"a": {"state": "waiting"}},
        keys={"deps:a": {"q|x"}},
        reply=[["a"], []],
        after={"a": {"state": "pending"}},
        keys_after={"deps:a": ABSENT},
    ),
    Case(
        "a failed task leaves its failure group",
        before={"a": {"state": "dead", "fp": "f1"}},
        keys={"fp:f1": Z({"a": "now", "b": "now"})},
        reply=[["a"], []],
        after={"a": {"state": "pending", "fp": ABSENT}},
        keys_after={"fp:f1": Z({"b": None})},
    ),
    Case(
        "unique: a free key is taken again",
        before={"a": {"state": "dead", "unique": "u"}},
        reply=[["a"], []],
        after={"a": {"state": "pending"}},
        keys_after={"unique:u": "a"},
    ),
    Case(
        "unique: a key still held by the task itself",
        before={"a": {"state": "cancelled", "unique": "u"}},
        keys={"unique:u": "a"},
        reply=[["a"], []],
        after={"a": {"state": "pending"}},
        keys_after={"unique:u": "a"},
    ),
    Case(
        "unique: a key held by a finished task is taken over",
        before={"a": {"state": "dead", "unique": "u"}, "b": {"state": "completed", "unique": "u"}},
        keys={"unique:u": "b"},
        reply=[["a"], []],
        after={"a": {"state": "pending"}, "b": {"state": "completed"}},
        keys_after={"unique:u": "a"},
    ),
    Case(
        "unique: a key held by a task that is gone is taken over",
        before={"a": {"state": "dead", "unique": "u"}},
        keys={"unique:u": "b"},
        reply=[["a"], []],
        after={"a": {"state": "pending"}},
        keys_after={"unique:u": "a"},
    ),
    *[
        Case(
            f"unique: refused while a {live} task holds the key",
            before={"a": {"state": "dead", "unique": "u"}, "b": {"state": live, "unique": "u", "due": PAST}},
            keys={"unique:u": "b"},
            reply=[[], ["a", f"unique key u is held by live task b ({live})"]],
            after={"a": {"state": "dead", "requeues": ABSENT}, "b": {"state": live}},
            keys_after={"unique:u": "b"},
        )
        for live in ("pending", "scheduled", "waiting", "active", "retry")
    ],
    Case(
        "a batch: moved, skipped and missing together",
        before={"a": {"state": "dead"}, "b": {"state": "pending"}},
        ids=("a", "b", "c"),
        reply=[["a"], []],
        after={"a": {"state": "pending"}, "b": {"state": "pending", "requeues": ABSENT}, "c": None},
    ),
)


@TABLE
def test_requeue(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(ops.requeue(SETTINGS, "q", list(case.ids), "requeued")))
