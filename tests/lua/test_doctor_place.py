"""doctor_place.lua: a task's place made to match its hash, re-checked at repair time."""

from __future__ import annotations

from engine import doctor
from engine.backend import Call
from tests.lua.harness import ABSENT, RECENT, SETTINGS, Case, cases, run_case

SHIFT = 2**40

TABLE = cases(
    Case(
        "hash gone: out of the live sets, finished indexes left to trim themselves",
        before={"a": {}},
        places={"a": ("pending", "active", "dead")},
        reply=["a", "removed"],
        after={"a": None},
        places_after={"a": ("dead",)},
    ),
    Case(
        "hash gone, only in a finished index: unchanged",
        before={"a": {}},
        places={"a": ("completed",)},
        reply=[],
        after={"a": None},
        places_after={"a": ("completed",)},
    ),
    Case("hash gone, in no set: unchanged", before={}, reply=[], after={"a": None}),
    Case(
        "a hash without a state field: left alone",
        before={"a": {"type": "t"}},
        places={"a": ("pending",)},
        reply=[],
        after={"a": {"type": "t", "state": ABSENT}},
        places_after={"a": ("pending",)},
    ),
    Case(
        "an unknown state: buried as dead, with an error naming it",
        before={"a": {"state": "bogus"}},
        places={"a": ("pending", "active")},
        reply=["a", "buried"],
        after={"a": {"state": "dead", "finished": RECENT, "error": "doctor: unknown state bogus"}},
        scores_after={("dead", "a"): RECENT},
    ),
    Case(
        "in its own set only: unchanged",
        before={"a": {"state": "pending"}},
        reply=[],
        after={"a": {"state": "pending"}},
    ),
    Case(
        "in its own set and another: leaves the other",
        before={"a": {"state": "pending"}},
        places={"a": ("pending", "active", "dead")},
        reply=["a", "placed:pending"],
        after={"a": {"state": "pending"}},
    ),
    Case(
        "in the wrong set: moved to its own",
        before={"a": {"state": "completed", "finished": "now-5000"}},
        places={"a": ("active",)},
        reply=["a", "placed:completed"],
        after={"a": {"state": "completed"}},
        scores_after={("completed", "a"): "now-5000"},
    ),
    Case(
        "pending, in no set: by its priority",
        before={"a": {"state": "pending", "priority": "10"}},
        places={"a": ()},
        reply=["a", "placed:pending"],
        scores_after={("pending", "a"): 10 * SHIFT},
    ),
    Case(
        "pending without a priority: the default 50",
        before={"a": {"state": "pending"}},
        places={"a": ()},
        reply=["a", "placed:pending"],
        scores_after={("pending", "a"): 50 * SHIFT},
    ),
    Case(
        "active: at the lease its hash holds",
        before={"a": {"state": "active", "lease": "now+30000"}},
        places={"a": ()},
        reply=["a", "placed:active"],
        scores_after={("active", "a"): "now+30000"},
    ),
    Case(
        "active without a lease: at 0, for the lease pass to recover",
        before={"a": {"state": "active"}},
        places={"a": ()},
        reply=["a", "placed:active"],
        scores_after={("active", "a"): 0},
    ),
    *[
        Case(
            f"{state}: at its due time",
            before={"a": {"state": state, "due": "now+70000"}},
            places={"a": ()},
            reply=["a", f"placed:{state}"],
            scores_after={(state, "a"): "now+70000"},
        )
        for state in ("scheduled", "retry")
    ],
    Case(
        "scheduled without a due time: now",
        before={"a": {"state": "scheduled"}},
        places={"a": ()},
        reply=["a", "placed:scheduled"],
        scores_after={("scheduled", "a"): RECENT},
    ),
    Case(
        "waiting: now",
        before={"a": {"state": "waiting"}},
        places={"a": ()},
        reply=["a", "placed:waiting"],
        scores_after={("waiting", "a"): RECENT},
    ),
    *[
        Case(
            f"{state}: at its finish time",
            before={"a": {"state": state, "finished": "now-9000"}},
            places={"a": ()},
            reply=["a", f"placed:{state}"],
            scores_after={(state, "a"): "now-9000"},
        )
        for state in ("completed", "dead", "cancelled", "quarantined")
    ],
    Case(
        "finished without a finish time: now",
        before={"a": {"state": "dead"}},
        places={"a": ()},
        reply=["a", "placed:dead"],
        scores_after={("dead", "a"): RECENT},
    ),
    Case(
        "a batch: only the changed ones reported",
        before={"a": {"state": "pending"}, "b": {"state": "dead"}, "c": {}},
        places={"b": (), "c": ("retry",)},
        ids=("a", "b", "c"),
        reply=["b", "placed:dead", "c", "removed"],
        after={"a": {"state": "pending"}, "b": {"state": "dead"}, "c": None},
    ),
)


@TABLE
def test_doctor_place(redis_url: str, case: Case) -> None:
    op = doctor._place(SETTINGS, "q", list(case.ids))
    call = next(op)
    op.close()
    assert isinstance(call, Call)
    run_case(redis_url, case, call)
