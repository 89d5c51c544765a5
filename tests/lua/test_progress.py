"""progress.lua: the holder of a running task's delivery stores its progress, never lower
than what is stored; any other token or state is refused (None) and changes nothing."""

from __future__ import annotations

from tests.lua.harness import ABSENT, SETTINGS, Case, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, progress_call

STARTED = {**HELD, "attempts": "1"}

TABLE = cases(
    Case(
        "its delivery's token: stored",
        before={"a": STARTED},
        args={"percent": 40},
        reply="40",
        after={"a": {"progress": "40", "pmsg": "msg"}},
    ),
    Case(
        "higher than stored: stored",
        before={"a": {**STARTED, "progress": "40", "pmsg": "old"}},
        args={"percent": 60.5},
        reply="60.5",
        after={"a": {"progress": "60.5", "pmsg": "msg"}},
    ),
    Case(
        "lower than stored: the stored percent stays, the message is new",
        before={"a": {**STARTED, "progress": "40", "pmsg": "old"}},
        args={"percent": 10},
        reply="40",
        after={"a": {"progress": "40", "pmsg": "msg"}},
    ),
    Case(
        "the same as stored: unchanged",
        before={"a": {**STARTED, "progress": "40"}},
        args={"percent": 40},
        reply="40",
        after={"a": {"progress": "40"}},
    ),
    Case(
        "above 100 (clamped by the call): 100",
        before={"a": STARTED},
        args={"percent": 150},
        reply="100",
        after={"a": {"progress": "100"}},
    ),
    Case(
        "reserved (a start whose reply was lost): stored, the token names the delivery",
        before={"a": {**STARTED, "reserved": "1"}},
        args={"percent": 5},
        reply="5",
        after={"a": {"progress": "5"}},
    ),
    *[
        Case(
            f"token of {who}: refused, unchanged",
            before={"a": {**STARTED, "progress": "20"}},
            args={"percent": 50, "token": token},
            reply=None,
            after={"a": {"progress": "20", "pmsg": ABSENT}},
        )
        for who, token in STALE_TOKENS.items()
    ],
    *[
        Case(
            f"{state}: refused, unchanged",
            before={"a": {**STARTED, "state": state}},
            args={"percent": 50},
            reply=None,
            after={"a": {"state": state, "progress": ABSENT, "pmsg": ABSENT}},
        )
        for state in ("pending", "retry", "completed", "dead", "cancelled")
    ],
    Case("missing: refused, no hash made", before={}, args={"percent": 50}, reply=None, after={"a": None}),
)


@TABLE
def test_progress(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    run_case(redis_url, case, progress_call(SETTINGS, "q", "a", token, case.args["percent"], "msg"))
