"""dep_register.lua: on a dependency's slot, record that another task waits for it."""

from __future__ import annotations

from engine import ops
from engine.backend import Batch
from tests.lua.harness import ABSENT, SETTINGS, TTL, Case, cases, run_case

TABLE = cases(
    Case(
        "the dependency is gone: false, nothing recorded",
        before={},
        reply=None,
        after={"a": None},
        keys_after={"dependents:a": ABSENT},
    ),
    *[
        Case(
            f"the dependency is {state}: its state, the dependent recorded",
            before={"a": {"state": state}},
            reply=state,
            after={"a": {"state": state}},
            keys_after={"dependents:a": {"q|b"}},
        )
        for state in ("pending", "active", "waiting", "completed", "dead", "cancelled", "quarantined")
    ],
    Case(
        "a dependency that expires: its dependents set expires with it",
        before={"a": {"state": "completed"}},
        expiring=("t:a",),
        reply="completed",
        keys_after={"dependents:a": TTL(True)},
    ),
    Case(
        "a dependency kept for good: so is its dependents set",
        before={"a": {"state": "pending"}},
        reply="pending",
        keys_after={"dependents:a": TTL(False)},
    ),
    Case(
        "a second dependent joins the first",
        before={"a": {"state": "pending"}},
        keys={"dependents:a": {"q|c"}},
        reply="pending",
        keys_after={"dependents:a": {"q|b", "q|c"}},
    ),
)


@TABLE
def test_dep_register(redis_url: str, case: Case) -> None:
    # b (the dependent) waits for a (the dependency); the engine registers it in one batch
    op = ops._register_dependencies(SETTINGS, [("q", "b", ["q|a"])])
    batch = next(op)
    op.close()
    assert isinstance(batch, Batch) and len(batch.calls) == 1
    run_case(redis_url, case, batch.calls[0])
