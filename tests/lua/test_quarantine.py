"""quarantine.lua: tasks set aside, restorable until the quarantine TTL ends."""

from __future__ import annotations

from engine import ops
from tests.lua.harness import ABSENT, ANY, RECENT, SETTINGS, TTL, Case, Json, Z, cases, first_call, run_case

QUARANTINE_MS = int(SETTINGS.quarantine_s * 1000)

TABLE = cases(
    *[
        Case(
            f"{state} -> quarantined, remembering where from",
            before={"a": {"state": state, "due": "now"}},
            keys={"h:a": ['[0,"x",""]']},
            reply=["a"],
            after={"a": {"state": "quarantined", "qfrom": state, "finished": RECENT}},
            scores_after={("quarantined", "a"): RECENT},
            keys_after={"t:a": TTL(True), "h:a": TTL(True)},
        )
        for state in ("pending", "active", "scheduled", "retry", "waiting", "dead", "completed", "cancelled")
    ],
    Case(
        "completed, its completion implied ('entered'): written down before 'finished' changes",
        before={"a": {"state": "completed", "entered": "pending", "finished": "1000"}},
        keys={"h:a": ['[5,"active","w1"]']},
        reply=["a"],
        after={"a": {"state": "quarantined", "qfrom": "completed", "finished": RECENT}},
        keys_after={
            "h:a": [
                Json([RECENT, "quarantined", ANY]),
                Json([1000, "completed", ""]),
                Json([5, "active", "w1"]),
            ]
        },
    ),
    Case(
        "dead, implied history: nothing more written down",
        before={"a": {"state": "dead", "entered": "pending", "finished": "1000"}},
        keys={"h:a": ['[5,"active","w1"]']},
        reply=["a"],
        after={"a": {"state": "quarantined", "qfrom": "dead"}},
        keys_after={"h:a": [Json([RECENT, "quarantined", ANY]), Json([5, "active", "w1"])]},
    ),
    Case(
        "already quarantined: left alone",
        before={"a": {"state": "quarantined", "qfrom": "dead"}},
        reply=[],
        after={"a": {"state": "quarantined", "qfrom": "dead"}},
    ),
    Case(
        "an unknown state: left alone",
        before={"a": {"state": "bogus"}},
        places={"a": ("pending",)},
        reply=[],
        after={"a": {"state": "bogus", "qfrom": ABSENT}},
        places_after={"a": ("pending",)},
    ),
    Case("a missing id is skipped", before={}, reply=[], after={"a": None}),
    Case(
        "an active task drops its lease, worker and flags",
        before={
            "a": {"state": "active", "lease": "now+60000", "worker": "w1", "cancel": "1", "reserved": "1"}
        },
        reply=["a"],
        after={
            "a": {
                "state": "quarantined",
                "lease": ABSENT,
                "worker": ABSENT,
                "cancel": ABSENT,
                "reserved": ABSENT,
            }
        },
    ),
    Case(
        "unique: its key is released",
        before={"a": {"state": "pending", "unique": "u"}},
        keys={"unique:u": "a"},
        reply=["a"],
        after={"a": {"state": "quarantined"}},
        keys_after={"unique:u": ABSENT},
    ),
    Case(
        "failure group: it leaves",
        before={"a": {"state": "dead", "fp": "f1"}},
        keys={"fp:f1": Z({"a": "now"})},
        reply=["a"],
        after={"a": {"state": "quarantined", "fp": ABSENT}},
        keys_after={"fp:f1": ABSENT},
    ),
    Case(
        "with dependents: to the outbox (they count it as failed)",
        before={"a": {"state": "pending"}},
        keys={"dependents:a": {"q|b"}},
        reply=["a"],
        after={"a": {"state": "quarantined"}},
        keys_after={"depoutbox": Z({"a": RECENT}), "dependents:a": TTL(True)},
    ),
    Case(
        "a waiting task's dependency set goes",
        before={"a": {"state": "waiting"}},
        keys={"deps:a": {"q|x"}},
        reply=["a"],
        after={"a": {"state": "quarantined"}},
        keys_after={"deps:a": ABSENT},
    ),
    Case(
        "entries older than the quarantine TTL are trimmed",
        before={"a": {"state": "pending"}, "old": {"state": "quarantined"}},
        places={"old": ()},
        keys={"quarantined": Z({"old": f"now-{QUARANTINE_MS + 60000}"})},
        reply=["a"],
        after={"a": {"state": "quarantined"}, "old": {"state": "quarantined"}},
        places_after={"old": ()},
    ),
    Case(
        "old entries are trimmed even when nothing moves",
        before={"old": {"state": "quarantined"}},
        places={"old": ()},
        keys={"quarantined": Z({"old": f"now-{QUARANTINE_MS + 60000}"})},
        ids=("x",),
        reply=[],
        after={"old": {"state": "quarantined"}},
        places_after={"old": ()},
    ),
)


@TABLE
def test_quarantine(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(ops.quarantine(SETTINGS, "q", list(case.ids))))
