"""defer.lua: a task of a type the worker has no handler for goes back uncharged, scheduled
after the delay, for a worker that knows the type; once it has waited so for the limit (at the
same attempt count) it is buried. Another delivery's token or a task not held is 'stale'."""

from __future__ import annotations

from tests.lua.harness import ABSENT, RECENT, SETTINGS, TTL, Case, Json, Later, Parts, Z, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, defer_call

DELAY_MS = 10_000
LIMIT_MS = 3_600_000
NOTE = "no handler for type t here"
ERROR = "unknown task type t"
STARTED = {**HELD, "attempts": "1", "lease": "now+30000", "type": "t"}
BACK = {"state": "scheduled", "due": Later(DELAY_MS), "lease": ABSENT, "worker": ABSENT, "reserved": ABSENT}

TABLE = cases(
    Case(
        "started: its attempt refunded, scheduled after the delay, the wait starts now",
        before={"a": STARTED},
        reply="deferred",
        after={"a": {**BACK, "attempts": "0", "unknown": Parts((RECENT, 0)), "dlv": "3"}},
        scores_after={("scheduled", "a"): Later(DELAY_MS)},
        keys_after={"h:a": [Json([RECENT, "scheduled", NOTE])]},
    ),
    Case(
        "reserved: nothing to refund",
        before={"a": {**STARTED, "attempts": "2", "reserved": "1"}},
        reply="deferred",
        after={"a": {**BACK, "attempts": "2", "unknown": Parts((RECENT, 2))}},
    ),
    Case(
        "deferred first longer than the limit ago, same attempt count: buried",
        before={"a": {**STARTED, "unknown": "1000:0"}},
        reply="dead",
        after={
            "a": {"state": "dead", "error": ERROR, "finished": RECENT, "unknown": "1000:0", "lease": ABSENT}
        },
        scores_after={("dead", "a"): RECENT},
    ),
    Case(
        "deferred first within the limit, same attempt count: deferred again, the wait goes on",
        before={"a": {**STARTED, "unknown": "1000:0"}},
        args={"limit_ms": 10**14},
        reply="deferred",
        after={"a": {**BACK, "attempts": "0", "unknown": "1000:0"}},
    ),
    Case(
        "waited exactly the limit: buried",
        before={"a": {**STARTED}},
        args={"limit_ms": 0},
        reply="dead",
        after={"a": {"state": "dead", "error": ERROR, "attempts": "0"}},
    ),
    Case(
        "deferred before at another attempt count (it ran meanwhile): a new wait",
        before={"a": {**STARTED, "attempts": "3", "unknown": "1000:0"}},
        reply="deferred",
        after={"a": {**BACK, "attempts": "2", "unknown": Parts((RECENT, 2))}},
    ),
    Case(
        "an unreadable deferral record: a new wait",
        before={"a": {**STARTED, "unknown": "soon"}},
        reply="deferred",
        after={"a": {**BACK, "unknown": Parts((RECENT, 0))}},
    ),
    Case(
        "buried: its unique lock released, its dependents told",
        before={"a": {**STARTED, "unknown": "1000:0", "unique": "u"}},
        keys={"unique:u": "a", "dependents:a": {"q|b"}},
        reply="dead",
        after={"a": {"state": "dead"}},
        keys_after={"unique:u": ABSENT, "depoutbox": Z({"a": RECENT}), "t:a": TTL(True)},
    ),
    *[
        Case(
            f"token of {who}: stale, left to its holder",
            before={"a": STARTED},
            args={"token": token},
            reply="stale",
            after={"a": {"state": "active", "attempts": "1", "worker": "w1", "unknown": ABSENT}},
        )
        for who, token in STALE_TOKENS.items()
    ],
    *[
        Case(
            f"{state}: stale, unchanged",
            before={"a": {**STARTED, "state": state}},
            reply="stale",
            after={"a": {"state": state, "attempts": "1", "unknown": ABSENT}},
        )
        for state in ("pending", "scheduled", "retry", "completed", "dead", "cancelled")
    ],
    Case("missing: stale", before={}, reply="stale", after={"a": None}),
)


@TABLE
def test_defer(redis_url: str, case: Case) -> None:
    limit_ms = case.args.get("limit_ms", LIMIT_MS)
    token = case.args.get("token", TOKEN)
    run_case(
        redis_url, case, defer_call(SETTINGS, "q", "a", token, DELAY_MS / 1000, limit_ms / 1000, NOTE, ERROR)
    )
