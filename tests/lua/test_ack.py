"""ack.lua: a started task's delivery completes it (result, retention, unique key, failure
group, dependents); a reserved task, another delivery's token or a missing task is refused; a
copy of the call sent again after a lost reply changes nothing and is not refused."""

from __future__ import annotations

from tests.lua.harness import ABSENT, RECENT, SETTINGS, TTL, Case, Json, Z, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, ack_call

RETENTION_MS = int(SETTINGS.retention_s * 1000)
STARTED = {**HELD, "attempts": "1", "lease": "now+30000", "cancel": "1"}
RESULT = '{"ok":true}'
# 'lease' stays: meaningless once the task is not active, and not worth a command per task
DONE = {"state": "completed", "finished": RECENT, "cancel": ABSENT}

TABLE = cases(
    Case(
        "started, its delivery's token: completed with its result",
        before={"a": STARTED},
        reply=[[], []],
        after={"a": {**DONE, "result": RESULT, "worker": "w1"}},
        scores_after={("completed", "a"): RECENT},
        keys_after={
            "t:a": TTL(True, RETENTION_MS),
            "h:a": [Json([RECENT, "completed", ""])],
        },
    ),
    Case(
        "started, enqueued with the implied history ('entered'): the completion is not pushed",
        before={"a": {**STARTED, "entered": "pending"}},
        keys={"h:a": ['[5,"active","w1"]']},
        reply=[[], []],
        after={"a": {**DONE, "entered": "pending"}},
        keys_after={"h:a": ['[5,"active","w1"]']},
    ),
    Case(
        "started from a reservation ('reserved' '0', start.lua): completed, the mark left '0'",
        before={"a": {**STARTED, "reserved": "0"}},
        reply=[[], []],
        after={"a": {**DONE, "reserved": "0"}},
    ),
    Case(
        "no result: none stored",
        before={"a": STARTED},
        args={"result": ""},
        reply=[[], []],
        after={"a": {**DONE, "result": ABSENT}},
    ),
    Case(
        "keep_result 0: the result is not stored",
        before={"a": {**STARTED, "keep": "0"}},
        reply=[[], []],
        after={"a": {**DONE, "result": ABSENT}},
        keys_after={"t:a": TTL(True, RETENTION_MS)},
    ),
    Case(
        "keep_result shorter than the retention: expires after it",
        before={"a": {**STARTED, "keep": "5000"}},
        keys={"h:a": ['[0,"active","w1"]']},
        reply=[[], []],
        after={"a": {**DONE, "result": RESULT}},
        keys_after={"t:a": TTL(True, 5000), "h:a": TTL(True, 5000)},
    ),
    Case(
        "keep_result shorter, but others depend on it: kept the retention",
        before={"a": {**STARTED, "keep": "5000"}},
        keys={"dependents:a": {"q|b"}},
        reply=[[], ["a"]],
        after={"a": DONE},
        keys_after={"t:a": TTL(True, RETENTION_MS, at_least_ms=5000), "depoutbox": Z({"a": RECENT})},
    ),
    Case(
        "sent again after a lost reply: not refused, nothing changes",
        before={"a": STARTED},
        sent=2,
        reply=[[], []],
        after={"a": {**DONE, "result": RESULT}},
        keys_after={"h:a": [Json([RECENT, "completed", ""])]},
    ),
    Case(
        "reserved (never started): refused, still held",
        before={"a": {**STARTED, "reserved": "1"}},
        reply=[["a"], []],
        after={"a": {"state": "active", "result": ABSENT, "finished": ABSENT, "lease": "now+30000"}},
    ),
    *[
        Case(
            f"token of {who}: refused, left to its holder",
            before={"a": STARTED},
            args={"token": token},
            reply=[["a"], []],
            after={"a": {"state": "active", "result": ABSENT, "lease": "now+30000"}},
        )
        for who, token in STALE_TOKENS.items()
    ],
    Case(
        "completed by another delivery: refused",
        before={"a": {**HELD, "state": "completed", "dlv": "4", "finished": "now-1000"}},
        reply=[["a"], []],
        after={"a": {"finished": "now-1000", "result": ABSENT}},
    ),
    *[
        Case(
            f"{state}: refused, unchanged",
            before={"a": {**STARTED, "state": state}},
            reply=[["a"], []],
            after={"a": {"state": state, "result": ABSENT, "finished": ABSENT}},
        )
        for state in ("pending", "retry", "dead", "cancelled", "quarantined")
    ],
    Case("missing: refused", before={}, reply=[["a"], []], after={"a": None}),
    Case(
        "unique: its lock is released",
        before={"a": {**STARTED, "unique": "u"}},
        keys={"unique:u": "a"},
        reply=[[], []],
        after={"a": DONE},
        keys_after={"unique:u": ABSENT},
    ),
    Case(
        "unique held by another task: left to it",
        before={"a": {**STARTED, "unique": "u"}},
        keys={"unique:u": "b"},
        reply=[[], []],
        after={"a": DONE},
        keys_after={"unique:u": "b"},
    ),
    Case(
        "a retried task leaves its failure group",
        before={"a": {**STARTED, "fp": "f1"}},
        keys={"fp:f1": Z({"a": "now", "b": "now"})},
        reply=[[], []],
        after={"a": {**DONE, "fp": ABSENT}},
        keys_after={"fp:f1": Z({"b": None})},
    ),
    Case(
        "with dependents: to the outbox, named in the reply",
        before={"a": STARTED},
        keys={"dependents:a": {"q|b"}},
        reply=[[], ["a"]],
        after={"a": DONE},
        keys_after={"depoutbox": Z({"a": RECENT}), "dependents:a": TTL(True)},
    ),
    Case(
        "enqueued with dependencies: its dependency set goes",
        before={"a": {**STARTED, "deps": '["q|x"]'}},
        keys={"deps:a": {"q|x"}},
        reply=[[], []],
        after={"a": DONE},
        keys_after={"deps:a": ABSENT},
    ),
    Case(
        "completing leaves the index's expired entries to the maintenance pass (no call per ack)",
        before={"a": STARTED, "old": {"state": "completed"}},
        places={"old": ()},
        keys={"completed": Z({"old": f"now-{RETENTION_MS + 60000}", "new": "now-1000"})},
        reply=[[], []],
        after={"a": DONE, "old": {"state": "completed"}},
        places_after={"old": ("completed",)},
        keys_after={"completed": Z({"a": RECENT, "old": f"now-{RETENTION_MS + 60000}", "new": "now-1000"})},
    ),
    Case(
        "nothing completed: no trim",
        before={"a": {**STARTED, "reserved": "1"}, "old": {"state": "completed"}},
        places={"old": ()},
        keys={"completed": Z({"old": f"now-{RETENTION_MS + 60000}"})},
        reply=[["a"], []],
        after={"a": {"state": "active"}, "old": {"state": "completed"}},
        places_after={"old": ("completed",)},
    ),
    Case(
        "a batch: completed, refused and missing together",
        before={"a": STARTED, "b": {**STARTED, "reserved": "1"}, "c": {**STARTED, "dlv": "9"}},
        ids=("a", "b", "c", "d"),
        reply=[["b", "c", "d"], []],
        after={"a": DONE, "b": {"state": "active"}, "c": {"state": "active"}},
    ),
)


@TABLE
def test_ack(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    result = case.args.get("result", RESULT)
    run_case(redis_url, case, ack_call(SETTINGS, "q", [(i, token, result) for i in case.ids]))
