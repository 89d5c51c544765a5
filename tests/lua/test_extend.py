"""extend.lua (the heartbeat): a held task's lease moves to now + the lease, started or
reserved; a cancel request is reported; any other token or state is reported lost and left."""

from __future__ import annotations

from tests.lua.harness import SETTINGS, Case, Later, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, extend_call

LEASE_MS = 60_000
OLD_LEASE = "now+5000"
STARTED = {**HELD, "attempts": "1", "lease": OLD_LEASE}

TABLE = cases(
    Case(
        "started, its delivery's token: lease extended",
        before={"a": STARTED},
        reply=[[], []],
        after={"a": {"lease": Later(LEASE_MS), "attempts": "1"}},
        scores_after={("active", "a"): Later(LEASE_MS)},
    ),
    Case(
        "reserved (a start whose reply was lost): extended like a started one",
        before={"a": {**STARTED, "reserved": "1"}},
        reply=[[], []],
        after={"a": {"lease": Later(LEASE_MS), "reserved": "1"}},
        scores_after={("active", "a"): Later(LEASE_MS)},
    ),
    Case(
        "its lease already ran out, not yet recovered: still this delivery's, extended",
        before={"a": {**STARTED, "lease": "now-1000"}},
        reply=[[], []],
        after={"a": {"lease": Later(LEASE_MS)}},
        scores_after={("active", "a"): Later(LEASE_MS)},
    ),
    Case(
        "cancel requested: extended and named for cancelling",
        before={"a": {**STARTED, "cancel": "1"}},
        reply=[[], ["a"]],
        after={"a": {"lease": Later(LEASE_MS), "cancel": "1"}},
    ),
    *[
        Case(
            f"token of {who}: lost, lease untouched",
            before={"a": STARTED},
            args={"token": token},
            reply=[["a"], []],
            after={"a": {"lease": OLD_LEASE}},
            scores_after={("active", "a"): OLD_LEASE},
        )
        for who, token in STALE_TOKENS.items()
    ],
    Case(
        "another delivery's, cancel requested: lost, not named for cancelling",
        before={"a": {**STARTED, "cancel": "1"}},
        args={"token": "w1#1"},
        reply=[["a"], []],
        after={"a": {"lease": OLD_LEASE}},
    ),
    *[
        Case(
            f"{state}: lost, left alone",
            before={"a": {**STARTED, "state": state}},
            reply=[["a"], []],
            after={"a": {"state": state, "lease": OLD_LEASE}},
        )
        for state in ("pending", "retry", "completed", "dead", "cancelled")
    ],
    Case("missing: lost", before={}, reply=[["a"], []], after={"a": None}),
    Case(
        "an active hash outside the active set is not put back into it",
        before={"a": STARTED},
        places={"a": ()},
        reply=[[], []],
        after={"a": {"lease": Later(LEASE_MS)}},
        places_after={"a": ()},
    ),
    Case(
        "a batch: one verdict per task",
        before={"a": STARTED, "b": {**STARTED, "cancel": "1"}, "c": {**STARTED, "dlv": "9"}},
        ids=("a", "b", "c", "d"),
        reply=[["c", "d"], ["b"]],
        after={"a": {"lease": Later(LEASE_MS)}, "b": {"lease": Later(LEASE_MS)}, "c": {"lease": OLD_LEASE}},
    ),
)


@TABLE
def test_extend(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    run_case(redis_url, case, extend_call(SETTINGS, "q", [(i, token) for i in case.ids], LEASE_MS))
