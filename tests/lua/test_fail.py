"""fail.lua: a started task's failed attempt is scheduled for a retry, buried when its
attempts are spent or the error is permanent, or ends cancelled; it joins its failure group.
Another delivery's token, a reserved task or a missing one is refused ('stale'); a copy of the
call sent again after a lost reply answers what the first copy did."""

from __future__ import annotations

import hashlib
from typing import Any

from engine.fingerprint import normalise_error
from tests.lua.harness import ABSENT, RECENT, SETTINGS, TTL, Case, H, Json, Later, Z, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, fail_call

DELAY_MS = 5000
ERROR = "ValueError: boom"
DEAD_RETENTION_MS = int(SETTINGS.dead_retention_s * 1000)
STARTED = {
    **HELD,
    "type": "t",
    "attempts": "1",
    "max_retry": "3",
    "lease": "now+30000",
}  # (a requested cancel wins over a failure: tests/engine/test_cancel_requested.py)
GONE = {"lease": ABSENT, "cancel": ABSENT}


FP = hashlib.sha1(f"t\n{normalise_error(ERROR)}".encode()).hexdigest()[:16]
"""The failure group of task type ``t`` with ``ERROR`` (join_group in _lib.lua)."""
GROUP = {
    FP: Json({"type": "t", "sample": normalise_error(ERROR), "first": RECENT, "last": RECENT, "total": 1})
}
RETRY = {
    "state": "retry",
    "due": Later(DELAY_MS),
    "error": ERROR,
    "tb": "tb",
    "ftok": TOKEN,
    "fp": FP,
    **GONE,
}
DEAD = {"state": "dead", "finished": RECENT, "error": ERROR, "ftok": TOKEN, "fp": FP, **GONE}


def _refused(state: dict[str, Any]) -> dict[str, Any]:
    return {"state": state["state"], "error": ABSENT, "ftok": ABSENT, "fp": ABSENT}


TABLE = cases(
    Case(
        "attempts left: retry after the delay",
        before={"a": {**STARTED, "progress": "40", "pmsg": "half"}},
        reply="retry",
        after={"a": {**RETRY, "progress": ABSENT, "pmsg": ABSENT, "attempts": "1"}},
        scores_after={("retry", "a"): Later(DELAY_MS)},
        keys_after={
            "failures": H(GROUP),
            f"fp:{FP}": Z({"a": RECENT}),
            "h:a": [Json([RECENT, "retry", ERROR])],
        },
    ),
    Case(
        "implied history ('entered'): the implied start is written down before the retry entry",
        before={"a": {**STARTED, "entered": "pending", "started": "7"}},
        reply="retry",
        after={"a": RETRY},
        keys_after={"h:a": [Json([RECENT, "retry", ERROR]), Json([7, "active", "w1"])]},
    ),
    Case(
        "implied history, its start already written down: not written again",
        before={"a": {**STARTED, "entered": "pending", "started": "7"}},
        keys={"h:a": ['[7,"active","w1"]']},
        reply="retry",
        after={"a": RETRY},
        keys_after={"h:a": [Json([RECENT, "retry", ERROR]), Json([7, "active", "w1"])]},
    ),
    Case(
        "the last retry allowed (attempts = max_retry): still a retry",
        before={"a": {**STARTED, "attempts": "3", "max_retry": "3"}},
        reply="retry",
        after={"a": RETRY},
    ),
    Case(
        "attempts spent: dead",
        before={"a": {**STARTED, "attempts": "4", "max_retry": "3"}},
        keys={"h:a": ['[0,"active","w1"]']},
        reply="dead",
        after={"a": DEAD},
        scores_after={("dead", "a"): RECENT},
        keys_after={
            "failures": H(GROUP),
            f"fp:{FP}": Z({"a": RECENT}),
            "t:a": TTL(True, DEAD_RETENTION_MS),
            "h:a": TTL(True, DEAD_RETENTION_MS),
        },
    ),
    Case(
        "permanent error: dead with retries left",
        before={"a": STARTED},
        args={"mode": "permanent"},
        reply="dead",
        after={"a": DEAD},
    ),
    Case(
        "a max_retry a buggy client left unreadable counts as 0",
        before={"a": {**STARTED, "max_retry": "many"}},
        reply="dead",
        after={"a": DEAD},
    ),
    Case(
        "cancel requested: cancelled, no failure recorded",
        before={"a": {**STARTED, "fp": "old"}},
        keys={"fp:old": Z({"a": "now"})},
        args={"mode": "cancel"},
        reply="cancelled",
        after={"a": {"state": "cancelled", "finished": RECENT, "ftok": TOKEN, "fp": ABSENT, **GONE}},
        scores_after={("cancelled", "a"): RECENT},
        keys_after={"failures": ABSENT, "fp:old": ABSENT, "t:a": TTL(True)},
    ),
    Case(
        "a second failure of the same kind counts in the same group",
        before={"a": STARTED},
        keys={"failures": H({FP: '{"type":"t","sample":"s","first":1,"last":1,"total":4}'})},
        reply="retry",
        after={"a": RETRY},
        keys_after={
            "failures": H({FP: Json({"type": "t", "sample": "s", "first": 1, "last": RECENT, "total": 5})})
        },
    ),
    Case(
        "a task moving to another group leaves its old one",
        before={"a": {**STARTED, "fp": "old"}},
        keys={"fp:old": Z({"a": "now", "b": "now"})},
        reply="retry",
        after={"a": RETRY},
        keys_after={"fp:old": Z({"b": None}), f"fp:{FP}": Z({"a": RECENT})},
    ),
    *[
        Case(
            f"sent again after a lost reply ({mode}): the first answer, recorded once",
            before={"a": STARTED},
            args={"mode": mode},
            sent=2,
            reply=answer,
            after={"a": {"state": answer, "ftok": TOKEN}},
            keys_after={f"fp:{FP}": ABSENT} if mode == "cancel" else {f"fp:{FP}": Z({"a": RECENT})},
        )
        for mode, answer in (("retry", "retry"), ("permanent", "dead"), ("cancel", "cancelled"))
    ],
    Case(
        "sent again after a lost reply, and the retry came due and was leased again: 'retry'",
        before={"a": {**STARTED, "dlv": "4", "ftok": TOKEN}},
        reply="retry",
        after={"a": {"state": "active", "dlv": "4", "error": ABSENT}},
    ),
    Case(
        "sent again after the retry went on to die in a later delivery: that end",
        before={"a": {**STARTED, "state": "dead", "dlv": "5", "ftok": TOKEN}},
        reply="dead",
        after={"a": {"state": "dead", "error": ABSENT}},
    ),
    Case(
        "reserved (never started): refused",
        before={"a": {**STARTED, "reserved": "1"}},
        reply="stale",
        after={"a": {"state": "active", "reserved": "1", "error": ABSENT, "lease": "now+30000"}},
    ),
    *[
        Case(
            f"token of {who}: refused, left to its holder",
            before={"a": STARTED},
            args={"token": token},
            reply="stale",
            after={"a": {**_refused(STARTED), "lease": "now+30000"}},
            keys_after={"failures": ABSENT},
        )
        for who, token in STALE_TOKENS.items()
    ],
    *[
        Case(
            f"{state}: refused, unchanged",
            before={"a": {**STARTED, "state": state}},
            reply="stale",
            after={"a": _refused({"state": state})},
        )
        for state in ("pending", "retry", "completed", "dead", "cancelled")
    ],
    Case("missing: refused", before={}, reply="stale", after={"a": None}),
    Case(
        "dead: its unique lock is released and its dependents told",
        before={"a": {**STARTED, "attempts": "4", "unique": "u"}},
        keys={"unique:u": "a", "dependents:a": {"q|b"}},
        reply="dead",
        after={"a": DEAD},
        keys_after={"unique:u": ABSENT, "depoutbox": Z({"a": RECENT}), "dependents:a": TTL(True)},
    ),
    Case(
        "retry: its unique lock is kept and no dependent is told",
        before={"a": {**STARTED, "unique": "u"}},
        keys={"unique:u": "a", "dependents:a": {"q|b"}},
        reply="retry",
        after={"a": RETRY},
        keys_after={"unique:u": "a", "depoutbox": ABSENT, "dependents:a": TTL(False)},
    ),
    Case(
        "cancelled: its unique lock is released and its dependents told",
        before={"a": {**STARTED, "unique": "u"}},
        keys={"unique:u": "a", "dependents:a": {"q|b"}},
        args={"mode": "cancel"},
        reply="cancelled",
        after={"a": {"state": "cancelled"}},
        keys_after={"unique:u": ABSENT, "depoutbox": Z({"a": RECENT})},
    ),
    Case(
        "dying trims dead entries older than the dead retention",
        before={"a": {**STARTED, "attempts": "4"}, "old": {"state": "dead"}},
        places={"old": ()},
        keys={"dead": Z({"old": f"now-{DEAD_RETENTION_MS + 60000}"})},
        reply="dead",
        after={"a": DEAD, "old": {"state": "dead"}},
        places_after={"old": ()},
    ),
)


@TABLE
def test_fail(redis_url: str, case: Case) -> None:
    call = fail_call(
        SETTINGS,
        "q",
        "a",
        case.args.get("token", TOKEN),
        ERROR,
        "tb",
        DELAY_MS / 1000,
        case.args.get("mode", "retry"),
    )
    run_case(redis_url, case, call)
