"""delete.lua: tasks in any state go, with their history and dependency sets."""

from __future__ import annotations

from engine import ops
from tests.lua.harness import ABSENT, SETTINGS, STATE_SETS, TTL, Case, Z, cases, first_call, run_case

TABLE = cases(
    *[
        Case(
            f"{state} -> gone",
            before={"a": {"state": state}},
            keys={"h:a": ['[0,"x",""]'], "deps:a": {"q|x"}},
            reply=["a"],
            after={"a": None},
            keys_after={"h:a": ABSENT, "deps:a": ABSENT},
        )
        for state in STATE_SETS
    ],
    Case("a missing id is not reported", before={}, reply=[], after={"a": None}),
    Case(
        "an id left in a set without its hash is removed and reported",
        before={"a": {}},
        places={"a": ("pending", "dead")},
        reply=["a"],
        after={"a": None},
    ),
    Case(
        "a hash in no set is deleted and reported",
        before={"a": {"state": "pending"}},
        places={"a": ()},
        reply=["a"],
        after={"a": None},
    ),
    Case(
        "unique: its own key is released",
        before={"a": {"state": "pending", "unique": "u"}},
        keys={"unique:u": "a"},
        reply=["a"],
        after={"a": None},
        keys_after={"unique:u": ABSENT},
    ),
    Case(
        "unique: another task's key is kept",
        before={"a": {"state": "completed", "unique": "u"}, "b": {"state": "pending", "unique": "u"}},
        keys={"unique:u": "b"},
        reply=["a"],
        after={"a": None, "b": {"state": "pending"}},
        keys_after={"unique:u": "b"},
    ),
    Case(
        "failure group: it leaves",
        before={"a": {"state": "dead", "fp": "f1"}},
        keys={"fp:f1": Z({"a": "now", "b": "now"})},
        reply=["a"],
        after={"a": None},
        keys_after={"fp:f1": Z({"b": None})},
    ),
    Case(
        "with dependents: to the outbox, its dependents kept a day",
        before={"a": {"state": "pending"}},
        keys={"dependents:a": {"q|b"}},
        reply=["a"],
        after={"a": None},
        keys_after={"depoutbox": Z({"a": None}), "dependents:a": TTL(True)},
    ),
    Case(
        "without dependents: nothing in the outbox",
        before={"a": {"state": "pending"}},
        reply=["a"],
        after={"a": None},
        keys_after={"depoutbox": ABSENT},
    ),
    Case(
        "a batch: only the ids that existed",
        before={"a": {"state": "dead"}, "b": {"state": "active"}},
        ids=("a", "x", "b"),
        reply=["a", "b"],
        after={"a": None, "b": None, "x": None},
    ),
)


@TABLE
def test_delete(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(ops.delete(SETTINGS, "q", list(case.ids))))
