"""The rate limit in dequeue.lua (rate_allowance / rate_charge in _lib.lua) and throttle.lua.

dequeue: a limited queue leases no more tasks than its bucket holds tokens, all of them started
(none reserved), charges the bucket for each one leased, registers no hand-off, and with pending
tasks and no token answers ``[[now, ms until the next token]]``. A pause a handler asked for
(``until``) holds back every lease till then. A junk limit counts as none.
throttle: a held task goes back to pending uncharged and the bucket's pause only ever grows; a
pause of the queue's bucket withdraws the queue's hand-off registrations (an enqueue during the
pause would hand a task out, a lease the bucket does not allow); another delivery's token or
another state is refused and nothing changes."""

from __future__ import annotations

from typing import Any

import redis

from engine.backend import SyncBackend
from engine.task import Task
from engine.worker.protocol import throttle_call
from tests.lua.harness import ABSENT, ANY, QK, RECENT, SETTINGS, Case, H, Json, Later, Z, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, WORKER, dequeue_call
from tests.lua.test_dequeue import LEASE_MS, PENDING, RESERVED, SHIFT, STARTED, entry
from tests.lua.test_enqueue import enqueue_call

THREE = {"a": PENDING, "b": PENDING, "c": PENDING}
IN_ORDER = {"pending": Z({"a": 50 * SHIFT + 1, "b": 50 * SHIFT + 2, "c": 50 * SHIFT + 3})}
UNPLACED: dict[str, tuple[str, ...]] = {"a": (), "b": (), "c": ()}
LIMIT = {"rate": "10", "period": "1000", "burst": "2"}
"""10/s with a burst of 2: one token every 100 ms, at most 2 at once."""
WAITING = {"state": "pending", "worker": ABSENT}


def limit(**fields: Any) -> dict[str, Any]:
    return {**IN_ORDER, "ratelimit": H({**LIMIT, **fields})}


DEQUEUE = cases(
    Case(
        "a full bucket: as many leased as it holds, the rest stay pending, the bucket charged",
        before=THREE,
        places=UNPLACED,
        keys=limit(),
        args={"max_tasks": 3},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": STARTED, "c": WAITING},
        places_after={"c": ("pending",)},
        # two tokens taken from a bucket whose time was now: tat = now + 2 * 100 ms
        keys_after={"ratelimit": H({**LIMIT, "tat": Later(200)})},
    ),
    Case(
        "one token left: one leased",
        before=THREE,
        places=UNPLACED,
        keys=limit(tat="now+100"),
        args={"max_tasks": 3},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": WAITING, "c": WAITING},
        places_after={"b": ("pending",), "c": ("pending",)},
        keys_after={"ratelimit": H({**LIMIT, "tat": ANY})},
    ),
    Case(
        "no token and pending tasks: nothing leased, the wait till the next token",
        before=THREE,
        places=UNPLACED,
        keys=limit(tat="now+200"),
        args={"max_tasks": 3},
        reply=[[RECENT, ANY]],
        after={"a": WAITING, "b": WAITING, "c": WAITING},
        places_after={"a": ("pending",), "b": ("pending",), "c": ("pending",)},
        keys_after={"ratelimit": H({**LIMIT, "tat": "now+200"})},
    ),
    Case(
        "no token, nothing pending: an empty reply (no wait to sleep on)",
        before={},
        keys={"ratelimit": H({**LIMIT, "tat": "now+200"})},
        reply=[RECENT],
    ),
    Case(
        "a bucket idle for long holds no more than its burst",
        before=THREE,
        places=UNPLACED,
        keys=limit(tat="now-60000"),
        args={"max_tasks": 3},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": STARTED, "c": WAITING},
        places_after={"c": ("pending",)},
        keys_after={"ratelimit": H({**LIMIT, "tat": Later(200)})},
    ),
    Case(
        "limited: none reserved (a reserved task would start outside its token)",
        before=THREE,
        places=UNPLACED,
        keys=limit(burst="5"),
        args={"max_tasks": 3, "start_now": 1},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED, "b": WAITING, "c": WAITING},
        places_after={"b": ("pending",), "c": ("pending",)},
        keys_after={"ratelimit": H({**LIMIT, "burst": "5", "tat": Later(100)})},
    ),
    Case(
        "limited, no slot free (start_now 0): nothing leased or reserved, no token taken",
        before=THREE,
        places=UNPLACED,
        keys=limit(),
        args={"max_tasks": 3, "start_now": 0},
        reply=[RECENT],
        after={"a": WAITING, "b": WAITING, "c": WAITING},
        places_after={"a": ("pending",), "b": ("pending",), "c": ("pending",)},
        keys_after={"ratelimit": H(LIMIT)},
    ),
    Case(
        "limited and drained with slots to spare: no hand-off registration",
        before={"a": PENDING},
        keys={"ratelimit": H(LIMIT)},
        args={"max_tasks": 4, "handoff_ms": 5000},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"idle": ABSENT},
    ),
    Case(
        "paused by a handler's RateLimited: nothing leased until then",
        before={"a": PENDING},
        keys={"ratelimit": H({"until": "now+5000"})},
        reply=[[RECENT, ANY]],
        after={"a": WAITING},
    ),
    Case(
        "a pause that is over: leased as without a limit",
        before={"a": PENDING},
        keys={"ratelimit": H({"until": "now-1"})},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1")],
        after={"a": STARTED},
        keys_after={"ratelimit": H({"until": ANY})},
    ),
    *[
        Case(
            f"a junk limit ({name}): no limit, leased and reserved as ever",
            before={"a": PENDING, "b": PENDING},
            places={"a": (), "b": ()},
            keys={"pending": Z({"a": 50 * SHIFT + 1, "b": 50 * SHIFT + 2}), "ratelimit": H(fields)},
            args={"max_tasks": 2, "start_now": 1},
            reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("b", 0, "1", f"{WORKER}#1")],
            after={"a": STARTED, "b": RESERVED},
            keys_after={"ratelimit": H(fields)},
        )
        for name, fields in {
            "rate 0": {"rate": "0", "period": "1000"},
            "text": {"rate": "fast", "period": "1000"},
            "no period": {"rate": "5"},
        }.items()
    ],
)


U = {**PENDING, "type": "u"}
TYPED = cases(
    Case(
        "a type without a token is skipped, another type leased past it",
        before={"a": PENDING, "b": U},
        places={"a": (), "b": ()},
        keys={
            "pending": Z({"a": 1, "b": 2}),
            "typelimits": H({"t": "1"}),
            "rl:t": H({**LIMIT, "tat": "now+200"}),
        },
        args={"max_tasks": 2},
        reply=[RECENT, *entry("b", 1, "0", f"{WORKER}#1", type="u")],
        after={"a": WAITING, "b": {**STARTED}},
        places_after={"a": ("pending",)},
        keys_after={"rl:t": H({**LIMIT, "tat": "now+200"}), "idle": ABSENT},
    ),
    Case(
        "only tasks of a type without a token: the wait till its next token, marked as a type's",
        before={"a": PENDING, "b": PENDING},
        places={"a": (), "b": ()},
        keys={
            "pending": Z({"a": 1, "b": 2}),
            "typelimits": H({"t": "1"}),
            "rl:t": H({**LIMIT, "tat": "now+200"}),
        },
        args={"max_tasks": 2},
        reply=[[RECENT, ANY, 1]],
        after={"a": WAITING, "b": WAITING},
        places_after={"a": ("pending",), "b": ("pending",)},
    ),
    Case(
        "one token of the type: one of its tasks leased, the type charged, none reserved",
        before={"a": PENDING, "b": PENDING, "c": U},
        places=UNPLACED,
        keys={**IN_ORDER, "typelimits": H({"t": "1"}), "rl:t": H({**LIMIT, "tat": "now+100"})},
        args={"max_tasks": 3, "start_now": 3},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1"), *entry("c", 1, "0", f"{WORKER}#1", type="u")],
        after={"a": STARTED, "b": WAITING, "c": STARTED},
        places_after={"b": ("pending",)},
        keys_after={"rl:t": H({**LIMIT, "tat": Later(200)})},
    ),
    Case(
        "a queue with type limits reserves nothing (a reserved task would start outside its token)",
        before={"a": U, "b": U},
        places={"a": (), "b": ()},
        keys={"pending": Z({"a": 1, "b": 2}), "typelimits": H({"t": "1"}), "rl:t": H(LIMIT)},
        args={"max_tasks": 2, "start_now": 1},
        reply=[RECENT, *entry("a", 1, "0", f"{WORKER}#1", type="u")],
        after={"a": STARTED, "b": WAITING},
        places_after={"b": ("pending",)},
    ),
)


@TYPED
def test_dequeue_under_a_task_types_rate_limit(redis_url: str, case: Case) -> None:
    test_dequeue_under_a_rate_limit(redis_url, case)


@DEQUEUE
def test_dequeue_under_a_rate_limit(redis_url: str, case: Case) -> None:
    a = {"max_tasks": 1, "start_now": None, "handoff_ms": 0, **case.args}
    run_case(
        redis_url,
        case,
        dequeue_call(
            SETTINGS,
            "q",
            a["max_tasks"],
            LEASE_MS,
            WORKER,
            start_now=a["start_now"],
            handoff_ms=a["handoff_ms"],
        ),
    )


NOTE = "RateLimited: retry after 5 s"
STARTED_HELD = {**HELD, "attempts": "2", "lease": "now+30000", "priority": "10"}
BACK = {"state": "pending", "lease": ABSENT, "worker": ABSENT, "reserved": ABSENT}

THROTTLE = cases(
    Case(
        "started: back to pending, its attempt refunded, the bucket paused for everyone",
        before={"a": STARTED_HELD},
        keys={"seq": "41"},
        reply="throttled",
        after={"a": {**BACK, "attempts": "1", "dlv": "3"}},
        scores_after={("pending", "a"): 10 * SHIFT + 42},
        keys_after={"ratelimit": H({"until": Later(5000)}), "h:a": [Json([RECENT, "pending", NOTE])]},
    ),
    Case(
        "reserved: back to pending, nothing to refund",
        before={"a": {**STARTED_HELD, "reserved": "1"}},
        reply="throttled",
        after={"a": {**BACK, "attempts": "2"}},
        keys_after={"ratelimit": H({"until": Later(5000)})},
    ),
    Case(
        "the limit is kept; a longer pause already asked for is not cut short",
        before={"a": STARTED_HELD},
        keys={"ratelimit": H({**LIMIT, "until": "now+60000"})},
        reply="throttled",
        after={"a": BACK},
        keys_after={"ratelimit": H({**LIMIT, "until": "now+60000"})},
    ),
    Case(
        "a shorter pause that is over is replaced",
        before={"a": STARTED_HELD},
        keys={"ratelimit": H({**LIMIT, "until": "now-10"})},
        reply="throttled",
        after={"a": BACK},
        keys_after={"ratelimit": H({**LIMIT, "until": Later(5000)})},
    ),
    Case(
        "the queue's bucket paused: the queue's hand-off registrations withdrawn",
        before={"a": STARTED_HELD},
        keys={"idle": H({WORKER: f"1:{10**15}:30000", "w9": f"2:{10**15}:30000"})},
        reply="throttled",
        after={"a": BACK},
        keys_after={"ratelimit": H({"until": Later(5000)}), "idle": ABSENT},
    ),
    Case(
        "its type's bucket paused: the registrations stay (a type with a limit of its own is "
        "never handed off: dequeue registers none while the queue has such types)",
        before={"a": {**STARTED_HELD, "type": "t"}},
        keys={"typelimits": H({"t": "1"}), "rl:t": H(LIMIT), "idle": H({"w9": f"2:{10**15}:30000"})},
        reply="throttled",
        after={"a": BACK},
        keys_after={"rl:t": H({**LIMIT, "until": Later(5000)}), "idle": H({"w9": f"2:{10**15}:30000"})},
    ),
    Case(
        "its type has a limit of its own: the type's bucket paused, the queue's untouched",
        before={"a": {**STARTED_HELD, "type": "t"}},
        keys={"typelimits": H({"t": "1"}), "rl:t": H(LIMIT)},
        reply="throttled",
        after={"a": BACK},
        keys_after={"rl:t": H({**LIMIT, "until": Later(5000)}), "ratelimit": ABSENT},
    ),
    Case(
        "another type has a limit of its own: the queue's bucket paused",
        before={"a": {**STARTED_HELD, "type": "u"}},
        keys={"typelimits": H({"t": "1"}), "rl:t": H(LIMIT)},
        reply="throttled",
        after={"a": BACK},
        keys_after={"rl:t": H(LIMIT), "ratelimit": H({"until": Later(5000)})},
    ),
    *[
        Case(
            f"token of {who}: refused, nothing paused",
            before={"a": STARTED_HELD},
            args={"token": token},
            reply="stale",
            after={"a": {"state": "active", "attempts": "2", "worker": WORKER}},
            keys_after={"ratelimit": ABSENT},
        )
        for who, token in STALE_TOKENS.items()
    ],
    *[
        Case(
            f"{state}: refused, left alone",
            before={"a": {**STARTED_HELD, "state": state}},
            reply="stale",
            after={"a": {"state": state, "attempts": "2"}},
            keys_after={"ratelimit": ABSENT},
        )
        for state in ("pending", "retry", "completed", "dead", "cancelled")
    ],
    Case("missing: refused", before={}, reply="stale", after={"a": None}, keys_after={"ratelimit": ABSENT}),
)


@THROTTLE
def test_throttle(redis_url: str, case: Case) -> None:
    token = case.args.get("token", TOKEN)
    run_case(redis_url, case, throttle_call(SETTINGS, "q", "a", token, 5.0, NOTE))


def test_no_task_is_handed_off_while_a_handler_paused_the_queue(redis_url: str) -> None:
    """The story behind the withdrawal: a queue with no limit of its own; its worker drained it
    with a slot to spare and registered for hand-offs; the handler of the task it runs raises
    RateLimited (the queue's bucket paused for 5 s). A task enqueued during the pause that runs
    before every pending one (a higher priority) stays pending: before the fix it was handed to
    the registered worker (reserved in its inbox, started at once), a lease during the pause."""
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(raw)
    try:
        backend.execute(enqueue_call([Task(type="t", queue="q", id="a")]))
        reply = backend.execute(dequeue_call(SETTINGS, "q", 2, LEASE_MS, WORKER, handoff_ms=60_000))
        assert reply[1] == "a" and raw.hget(QK.idle, WORKER) is not None  # one slot to spare
        token = reply[11]
        assert backend.execute(throttle_call(SETTINGS, "q", "a", token, 5.0, NOTE)) == "throttled"
        backend.execute(enqueue_call([Task(type="t", queue="q", id="b", priority=10)]))
        assert raw.hmget(QK.task("b"), "state", "worker", "dlv") == ["pending", None, None]
        assert raw.llen(QK.inbox(WORKER)) == 0 and raw.zrange(QK.pending, 0, -1) == ["b", "a"]
    finally:
        backend.close()
