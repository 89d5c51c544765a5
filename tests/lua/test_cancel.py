"""cancel.lua: tasks not yet running leave their queue; running ones get a cancel flag."""

from __future__ import annotations

from engine import ops
from tests.lua.harness import ABSENT, PAST, RECENT, SETTINGS, TTL, Case, Z, cases, first_call, run_case

RETENTION_MS = int(SETTINGS.retention_s * 1000)
REASON = "cancelled by request"

TABLE = cases(
    *[
        Case(
            f"{state} -> cancelled",
            before={"a": {"state": state, "due": PAST}},
            keys={"h:a": ['[0,"x",""]']},
            reply=["a", "cancelled"],
            after={"a": {"state": "cancelled", "finished": RECENT, "reason": REASON}},
            scores_after={("cancelled", "a"): RECENT},
            keys_after={"t:a": TTL(True), "h:a": TTL(True)},
        )
        for state in ("pending", "scheduled", "waiting", "retry")
    ],
    Case(
        "active: a cancel flag for its worker, still active",
        before={"a": {"state": "active", "worker": "w1"}},
        reply=["a", "requested"],
        after={"a": {"state": "active", "cancel": "1", "reason": REASON, "finished": ABSENT}},
        keys_after={"t:a": TTL(False)},
    ),
    Case(
        "active but reserved (leased, not started): cancelled at once; its start will be refused",
        before={"a": {"state": "active", "worker": "w1", "reserved": "1", "dlv": "1", "lease": "now+30000"}},
        reply=["a", "cancelled"],
        after={
            "a": {
                "state": "cancelled",
                "finished": RECENT,
                "reason": REASON,
                "reserved": ABSENT,
                "lease": ABSENT,
                "cancel": ABSENT,
            }
        },
        places_after={"a": ("cancelled",)},
        keys_after={"t:a": TTL(True)},
    ),
    Case(
        "reserved in a concurrency group: its slot in the group goes",
        before={"a": {"state": "active", "worker": "w1", "reserved": "1", "dlv": "1", "grp": "g"}},
        keys={"cg:g": Z({"a": "now+30000", "b": "now+30000"})},
        reply=["a", "cancelled"],
        after={"a": {"state": "cancelled"}},
        keys_after={"cg:g": Z({"b": None})},
    ),
    Case(
        "started (reserved '0'): a cancel flag, still active",
        before={"a": {"state": "active", "worker": "w1", "reserved": "0", "attempts": "1"}},
        reply=["a", "requested"],
        after={"a": {"state": "active", "cancel": "1"}},
    ),
    *[
        Case(
            f"{state}: already final, left alone",
            before={"a": {"state": state}},
            reply=["a", f"final:{state}"],
            after={"a": {"state": state, "reason": ABSENT, "cancel": ABSENT}},
        )
        for state in ("completed", "dead", "cancelled", "quarantined")
    ],
    Case("missing", before={}, reply=["a", "missing"], after={"a": None}),
    Case(
        "unique: its key is released",
        before={"a": {"state": "pending", "unique": "u"}},
        keys={"unique:u": "a"},
        reply=["a", "cancelled"],
        after={"a": {"state": "cancelled"}},
        keys_after={"unique:u": ABSENT},
    ),
    Case(
        "failure group: a retrying task leaves it",
        before={"a": {"state": "retry", "fp": "f1", "due": PAST}},
        keys={"fp:f1": Z({"a": "now", "b": "now"})},
        reply=["a", "cancelled"],
        after={"a": {"state": "cancelled", "fp": ABSENT}},
        keys_after={"fp:f1": Z({"b": None})},
    ),
    Case(
        "with dependents: to the outbox",
        before={"a": {"state": "pending"}},
        keys={"dependents:a": {"q|b"}},
        reply=["a", "cancelled"],
        after={"a": {"state": "cancelled"}},
        keys_after={"depoutbox": Z({"a": RECENT}), "dependents:a": TTL(True)},
    ),
    Case(
        "a waiting task's dependency set goes",
        before={"a": {"state": "waiting"}},
        keys={"deps:a": {"q|x"}},
        reply=["a", "cancelled"],
        after={"a": {"state": "cancelled"}},
        keys_after={"deps:a": ABSENT},
    ),
    Case(
        "cancelling trims cancelled entries older than the retention",
        before={"a": {"state": "pending"}, "old": {"state": "cancelled"}},
        places={"old": ()},
        keys={"cancelled": Z({"old": f"now-{RETENTION_MS + 60000}"})},
        reply=["a", "cancelled"],
        after={"a": {"state": "cancelled"}, "old": {"state": "cancelled"}},
        places_after={"old": ()},
    ),
    Case(
        "nothing cancelled: no trim",
        before={"a": {"state": "active"}, "old": {"state": "cancelled"}},
        places={"old": ()},
        keys={"cancelled": Z({"old": f"now-{RETENTION_MS + 60000}"})},
        reply=["a", "requested"],
        after={"a": {"state": "active"}, "old": {"state": "cancelled"}},
        places_after={"old": ("cancelled",)},
    ),
    Case(
        "a batch: one outcome per id, in order",
        before={"a": {"state": "pending"}, "b": {"state": "active"}, "c": {"state": "dead"}},
        ids=("a", "b", "c", "d"),
        reply=["a", "cancelled", "b", "requested", "c", "final:dead", "d", "missing"],
        after={"a": {"state": "cancelled"}, "b": {"state": "active", "cancel": "1"}, "c": {"state": "dead"}},
    ),
)


@TABLE
def test_cancel(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(ops.cancel(SETTINGS, "q", list(case.ids), REASON)))
