"""dep_resolve.lua: a waiting task told that one of its dependencies finished."""

from __future__ import annotations

import dataclasses

from engine import ops
from tests.lua.harness import ABSENT, FUTURE, PAST, RECENT, SETTINGS, TTL, Case, Z, cases, run_case

REF = "q|x"


def waiting(**fields: str) -> dict[str, str]:
    return {"state": "waiting", **fields}


TABLE = cases(
    *[
        Case(
            f"not waiting ({state}), told {outcome}: noop",
            before={"a": {"state": state}},
            keys={"deps:a": {REF}},
            reply="noop",
            after={"a": {"state": state}},
            keys_after={"deps:a": {REF}},
            args={"outcome": outcome},
        )
        for state in ("pending", "active", "cancelled")
        for outcome in ("completed", "dead")
    ],
    Case("missing: noop", before={}, reply="noop", after={"a": None}, args={"outcome": "completed"}),
    Case(
        "completed, not one of its dependencies (told twice): noop",
        before={"a": waiting()},
        keys={"deps:a": {"q|y"}},
        reply="noop",
        after={"a": {"state": "waiting"}},
        keys_after={"deps:a": {"q|y"}},
        args={"outcome": "completed"},
    ),
    Case(
        "completed, others still to come: waiting",
        before={"a": waiting()},
        keys={"deps:a": {REF, "q|y"}},
        reply="waiting",
        after={"a": {"state": "waiting"}},
        keys_after={"deps:a": {"q|y"}},
        args={"outcome": "completed"},
    ),
    Case(
        "completed, the last one, due passed: released to pending",
        before={"a": waiting(due=PAST, priority="20")},
        keys={"deps:a": {REF}, "seq": "6"},
        reply="released",
        after={"a": {"state": "pending"}},
        scores_after={("pending", "a"): 20 * 2**40 + 7},
        keys_after={"deps:a": ABSENT},
        args={"outcome": "completed"},
    ),
    Case(
        "completed, the last one, due later: released to scheduled",
        before={"a": waiting(due=FUTURE)},
        keys={"deps:a": {REF}},
        reply="released",
        after={"a": {"state": "scheduled"}},
        scores_after={("scheduled", "a"): FUTURE},
        args={"outcome": "completed"},
    ),
    Case(
        "completed, the last one, no due time: released to pending",
        before={"a": waiting()},
        keys={"deps:a": {REF}},
        reply="released",
        after={"a": {"state": "pending"}},
        args={"outcome": "completed"},
    ),
    *[
        Case(
            f"{outcome}, stored policy cancel: cancelled",
            before={"a": waiting(dpol="cancel")},
            keys={"deps:a": {REF}, "h:a": ['[0,"waiting",""]']},
            reply="cancelled",
            after={"a": {"state": "cancelled", "finished": RECENT, "reason": f"dependency {REF} {outcome}"}},
            scores_after={("cancelled", "a"): RECENT},
            keys_after={"deps:a": ABSENT, "t:a": TTL(True), "h:a": TTL(True)},
            args={"outcome": outcome},
        )
        for outcome in ("dead", "cancelled", "quarantined", "gone")
    ],
    Case(
        "failed, not one of its dependencies: noop",
        before={"a": waiting(dpol="cancel")},
        keys={"deps:a": {"q|y"}},
        reply="noop",
        after={"a": {"state": "waiting", "reason": ABSENT}},
        args={"outcome": "dead"},
    ),
    Case(
        "failed, stored policy hold: held, still waiting",
        before={"a": waiting(dpol="hold")},
        keys={"deps:a": {REF}},
        reply="held",
        after={"a": {"state": "waiting", "reason": f"dependency {REF} dead; requeue it to continue"}},
        keys_after={"deps:a": {REF}, "t:a": TTL(False)},
        args={"outcome": "dead"},
    ),
    Case(
        "failed, held already for the same reason: noop",
        before={"a": waiting(dpol="hold", reason=f"dependency {REF} dead; requeue it to continue")},
        keys={"deps:a": {REF}},
        reply="noop",
        after={"a": {"state": "waiting"}},
        args={"outcome": "dead"},
    ),
    Case(
        "failed, no stored policy: the caller's fallback (hold)",
        before={"a": waiting()},
        keys={"deps:a": {REF}},
        reply="held",
        after={"a": {"state": "waiting"}},
        args={"outcome": "dead", "fallback": "hold"},
    ),
    Case(
        "failed, no stored policy: the caller's fallback (cancel)",
        before={"a": waiting()},
        keys={"deps:a": {REF}},
        reply="cancelled",
        after={"a": {"state": "cancelled"}},
        args={"outcome": "dead", "fallback": "cancel"},
    ),
    Case(
        "failed, stored cancel wins over a fallback of hold",
        before={"a": waiting(dpol="cancel")},
        keys={"deps:a": {REF}},
        reply="cancelled",
        after={"a": {"state": "cancelled"}},
        args={"outcome": "dead", "fallback": "hold"},
    ),
    Case(
        "failed, stored hold wins over a fallback of cancel",
        before={"a": waiting(dpol="hold")},
        keys={"deps:a": {REF}},
        reply="held",
        after={"a": {"state": "waiting"}},
        args={"outcome": "dead", "fallback": "cancel"},
    ),
    Case(
        "cancelled: its unique key is released, its own dependents told through the outbox",
        before={"a": waiting(dpol="cancel", unique="u")},
        keys={"deps:a": {REF}, "unique:u": "a", "dependents:a": {"q|b"}},
        reply="cancelled",
        after={"a": {"state": "cancelled"}},
        keys_after={"unique:u": ABSENT, "depoutbox": Z({"a": RECENT})},
        args={"outcome": "dead"},
    ),
)


@TABLE
def test_dep_resolve(redis_url: str, case: Case) -> None:
    settings = dataclasses.replace(SETTINGS, dependency_failure=case.args.get("fallback", "cancel"))
    run_case(redis_url, case, ops.resolve_call(settings, "q", "a", REF, case.args["outcome"]))
