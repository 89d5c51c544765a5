"""start.lua: a reserved (prefetched or handed-off) task is charged its attempt when its
delivery starts it; any other token, state or a second copy of the call charges nothing."""

from __future__ import annotations

from tests.lua.harness import ABSENT, RECENT, SETTINGS, Case, Json, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, job, start_call

RESERVED = {**HELD, "reserved": "1", "attempts": "0"}

TABLE = cases(
    Case(
        "reserved, its delivery's token: started as attempt 1",
        before={"a": RESERVED},
        reply=["a", 1],
        after={"a": {"state": "active", "attempts": "1", "started": RECENT, "reserved": "0"}},
        keys_after={"h:a": [Json([RECENT, "active", "w1"])]},
    ),
    Case(
        "reserved after two attempts: started as attempt 3",
        before={"a": {**RESERVED, "attempts": "2"}},
        reply=["a", 3],
        after={"a": {"attempts": "3", "reserved": "0"}},
    ),
    Case(
        "sent again after a lost reply: the attempt it started as, charged once",
        before={"a": RESERVED},
        sent=2,
        reply=["a", 1],
        after={"a": {"attempts": "1", "reserved": "0"}},
    ),
    Case(
        "already started by this delivery (dequeue started it): its attempt, nothing charged",
        before={"a": {**HELD, "attempts": "2", "started": "now-5000"}},
        reply=["a", 2],
        after={"a": {"attempts": "2", "started": "now-5000"}},
    ),
    *[
        Case(
            f"token of {who}: refused (0), nothing charged",
            before={"a": RESERVED},
            args={"token": token},
            reply=["a", 0],
            after={"a": {"attempts": "0", "reserved": "1", "started": ABSENT}},
        )
        for who, token in STALE_TOKENS.items()
    ],
    Case(
        "no delivery (a hash without worker or dlv): refused",
        before={"a": {"state": "active", "reserved": "1", "attempts": "0"}},
        reply=["a", 0],
        after={"a": {"attempts": "0", "reserved": "1"}},
    ),
    *[
        Case(
            f"{state} (its lease ran out, or an operator moved it): refused",
            before={"a": {**RESERVED, "state": state}},
            reply=["a", 0],
            after={"a": {"state": state, "attempts": "0", "reserved": "1"}},
        )
        for state in ("pending", "retry", "completed", "dead", "cancelled", "quarantined")
    ],
    Case("missing: refused", before={}, reply=["a", 0], after={"a": None}),
    Case(
        "a batch: one answer per task, in order",
        before={"a": RESERVED, "b": {**RESERVED, "attempts": "1"}, "c": {**RESERVED, "state": "pending"}},
        ids=("a", "b", "c", "d"),
        reply=["a", 1, "b", 2, "c", 0, "d", 0],
        after={"a": {"attempts": "1"}, "b": {"attempts": "2"}, "c": {"attempts": "0"}},
    ),
)


@TABLE
def test_start(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    run_case(redis_url, case, start_call(SETTINGS, "q", [job(i, token) for i in case.ids]))
