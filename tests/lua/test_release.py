"""release.lua (graceful shutdown, prefetched tasks never started): a held task goes back to
pending at its priority, its started attempt refunded, a reserved one uncharged; any other
token or state is refused and left alone."""

from __future__ import annotations

from tests.lua.harness import ABSENT, RECENT, SETTINGS, Case, H, Json, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, release_call

SHIFT = 2**40
NOTE = "worker shutting down"
STARTED = {**HELD, "attempts": "2", "lease": "now+30000", "priority": "10"}
BACK = {"state": "pending", "lease": ABSENT, "worker": ABSENT, "reserved": ABSENT}

TABLE = cases(
    Case(
        "started: back to pending, its attempt refunded",
        before={"a": STARTED},
        keys={"seq": "41"},
        reply=[],
        after={"a": {**BACK, "attempts": "1", "dlv": "3"}},
        scores_after={("pending", "a"): 10 * SHIFT + 42},
        keys_after={"seq": "42", "h:a": [Json([RECENT, "pending", NOTE])]},
    ),
    Case(
        "fair queue: back to the end of its group's line (a new tag), not the sequence",
        before={"a": {**STARTED, "grp": "g"}},
        keys={"seq": "41", "fair": H({"on": "1", "clock": "3000", "t:g": "4000"})},
        reply=[],
        after={"a": {**BACK, "attempts": "1"}},
        scores_after={("pending", "a"): 10 * SHIFT + 5024},
        keys_after={"seq": "41", "fair": H({"on": "1", "clock": "3000", "t:g": "5024"})},
    ),
    Case(
        "reserved: back to pending, nothing to refund",
        before={"a": {**STARTED, "reserved": "1"}},
        reply=[],
        after={"a": {**BACK, "attempts": "2"}},
        scores_after={("pending", "a"): 10 * SHIFT + 1},
    ),
    Case(
        "started with no attempt counted: stays at 0",
        before={"a": {**STARTED, "attempts": "0"}},
        reply=[],
        after={"a": {**BACK, "attempts": "0"}},
    ),
    Case(
        "an unreadable priority: pending at the default 50",
        before={"a": {**STARTED, "priority": "nan"}},
        reply=[],
        after={"a": BACK},
        scores_after={("pending", "a"): 50 * SHIFT + 1},
    ),
    *[
        Case(
            f"token of {who}: refused, left to its holder",
            before={"a": STARTED},
            args={"token": token},
            reply=["a"],
            after={"a": {"state": "active", "attempts": "2", "worker": "w1", "lease": "now+30000"}},
        )
        for who, token in STALE_TOKENS.items()
    ],
    *[
        Case(
            f"{state}: refused, left alone",
            before={"a": {**STARTED, "state": state}},
            reply=["a"],
            after={"a": {"state": state, "attempts": "2"}},
        )
        for state in ("pending", "retry", "completed", "dead", "cancelled")
    ],
    Case("missing: refused", before={}, reply=["a"], after={"a": None}),
    Case(
        "a batch: released in order, refused named",
        before={"a": STARTED, "b": {**STARTED, "priority": "5"}, "c": {**STARTED, "dlv": "9"}},
        ids=("a", "b", "c", "d"),
        reply=["c", "d"],
        after={"a": BACK, "b": BACK, "c": {"state": "active"}},
        scores_after={("pending", "a"): 10 * SHIFT + 1, ("pending", "b"): 5 * SHIFT + 2},
    ),
)


@TABLE
def test_release(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    run_case(redis_url, case, release_call(SETTINGS, "q", [(i, token) for i in case.ids], NOTE))
