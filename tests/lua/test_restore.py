"""restore.lua: quarantined tasks back where they were (finished ones) or back to life."""

from __future__ import annotations

from engine import ops
from tests.lua.harness import (
    ABSENT,
    FUTURE,
    PAST,
    RECENT,
    SETTINGS,
    TTL,
    Case,
    cases,
    first_call,
    run_case,
)

NOTHING: list[list[str]] = [[], [], []]

FINISHED = [
    Case(
        f"quarantined from {was} -> {was}, expiring again",
        before={"a": {"state": "quarantined", "qfrom": was, "finished": "now-5000"}},
        keys={"h:a": ['[0,"quarantined",""]']},
        reply=[["a"], [], []],
        after={"a": {"state": was, "qfrom": ABSENT}},
        scores_after={(was, "a"): RECENT},
        keys_after={"t:a": TTL(True), "h:a": TTL(True)},
    )
    for was in ("dead", "completed", "cancelled")
]

BACK_TO_PENDING = [
    Case(
        f"quarantined from {was} -> pending, no worker or lease",
        before={
            "a": {
                "state": "quarantined",
                "qfrom": was,
                "attempts": "2",
                "worker": "w1",
                "reserved": "1",
                "lease": "now",
                "cancel": "1",
                "finished": "now",
            }
        },
        expiring=("t:a",),
        reply=[["a"], [], []],
        after={
            "a": {
                "state": "pending",
                "attempts": "0",
                "qfrom": ABSENT,
                "worker": ABSENT,
                "reserved": ABSENT,
                "lease": ABSENT,
                "cancel": ABSENT,
                "finished": ABSENT,
            }
        },
        keys_after={"t:a": TTL(False)},
    )
    for was in ("pending", "active")
]

TABLE = cases(
    *FINISHED,
    *BACK_TO_PENDING,
    *[
        Case(
            f"quarantined from {was}, due later -> scheduled at its due time",
            before={"a": {"state": "quarantined", "qfrom": was, "due": FUTURE}},
            reply=[["a"], [], []],
            after={"a": {"state": "scheduled"}},
            scores_after={("scheduled", "a"): FUTURE},
        )
        for was in ("scheduled", "retry", "waiting")
    ],
    *[
        Case(
            f"quarantined from {was}, due passed -> pending",
            before={"a": {"state": "quarantined", "qfrom": was, "due": PAST}},
            reply=[["a"], [], []],
            after={"a": {"state": "pending"}},
        )
        for was in ("scheduled", "retry", "waiting")
    ],
    Case(
        "quarantined from waiting with dependencies -> waiting, dependencies set again",
        before={"a": {"state": "quarantined", "qfrom": "waiting", "deps": '["q|x","q|y"]', "due": PAST}},
        reply=[["a"], [], ["a"]],
        after={"a": {"state": "waiting"}},
        keys_after={"deps:a": {"q|x", "q|y"}},
    ),
    Case(
        "quarantined from waiting with an empty dependency list -> pending",
        before={"a": {"state": "quarantined", "qfrom": "waiting", "deps": "[]"}},
        reply=[["a"], [], []],
        after={"a": {"state": "pending"}},
        keys_after={"deps:a": ABSENT},
    ),
    Case(
        "dependencies of a task that was not waiting are ignored",
        before={"a": {"state": "quarantined", "qfrom": "pending", "deps": '["q|x"]'}},
        reply=[["a"], [], []],
        after={"a": {"state": "pending"}},
        keys_after={"deps:a": ABSENT},
    ),
    Case(
        "quarantined with no record of where from -> pending",
        before={"a": {"state": "quarantined"}},
        reply=[["a"], [], []],
        after={"a": {"state": "pending"}},
    ),
    *[
        Case(
            f"{state} is not quarantined: left alone",
            before={"a": {"state": state, "qfrom": "dead"}},
            reply=NOTHING,
            after={"a": {"state": state, "qfrom": "dead"}},
        )
        for state in ("pending", "dead", "completed")
    ],
    Case("a missing id is skipped", before={}, reply=NOTHING, after={"a": None}),
    Case(
        "unique: a live task takes its free key again",
        before={"a": {"state": "quarantined", "qfrom": "pending", "unique": "u"}},
        reply=[["a"], [], []],
        after={"a": {"state": "pending"}},
        keys_after={"unique:u": "a"},
    ),
    Case(
        "unique: refused while another live task holds the key; stays quarantined",
        before={
            "a": {"state": "quarantined", "qfrom": "pending", "unique": "u"},
            "b": {"state": "pending", "unique": "u"},
        },
        keys={"unique:u": "b"},
        reply=[[], ["a", "unique key u is held by live task b (pending)"], []],
        after={"a": {"state": "quarantined", "qfrom": "pending"}, "b": {"state": "pending"}},
        keys_after={"unique:u": "b"},
    ),
    Case(
        "unique: a finished task comes back whoever holds the key",
        before={
            "a": {"state": "quarantined", "qfrom": "completed", "unique": "u"},
            "b": {"state": "pending", "unique": "u"},
        },
        keys={"unique:u": "b"},
        reply=[["a"], [], []],
        after={"a": {"state": "completed"}, "b": {"state": "pending"}},
        keys_after={"unique:u": "b"},
    ),
    Case(
        "a batch: restored, refused and skipped together",
        before={
            "a": {"state": "quarantined", "qfrom": "dead"},
            "b": {"state": "quarantined", "qfrom": "pending", "unique": "u"},
            "c": {"state": "pending", "unique": "u"},
        },
        keys={"unique:u": "c"},
        ids=("a", "b", "c", "d"),
        reply=[["a"], ["b", "unique key u is held by live task c (pending)"], []],
        after={"a": {"state": "dead"}, "b": {"state": "quarantined"}, "c": {"state": "pending"}, "d": None},
    ),
)


@TABLE
def test_restore(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(ops.restore(SETTINGS, "q", list(case.ids))))
