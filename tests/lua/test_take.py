"""take.lua: the hand-offs an inbox loop's ``BLMOVE`` moved to its taken list start in the same
round trip (each charged its attempt as start.lua would), and every record stays in the list,
returned again with the attempt it started as, until the worker confirms it got it (its id and
token in a later call): a lost reply neither strands a charged task nor charges it twice. A
wake-up ('') or anything unreadable is dropped, never wedging the calls after it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis
import redis.asyncio as aioredis

from engine import lua
from engine.backend import Batch, SyncBackend
from engine.worker.protocol import take_calls
from tests.lua.harness import ABSENT, QK, RECENT, SETTINGS, TTL, Case, cases, run_case
from tests.lua.protocol import HELD, STALE_TOKENS, TOKEN, WORKER

LEASE_MS = 30_000
RESERVED = {**HELD, "reserved": "1", "attempts": "0", "lease": "now+30000"}
TAKEN = "taken:" + WORKER
INBOX = "inbox:" + WORKER


def record(task_id: str, token: str = TOKEN) -> str:
    """A hand-off as enqueue.lua pushes it: the fields of a dequeue reply, the token last."""
    return json.dumps([task_id, "t", "{}", "50", "3", "60000", 0, "", "1", "1", token])


def confirming(*ids: str) -> list[str]:
    return [x for i in ids for x in (i, TOKEN)]


TABLE = cases(
    Case(
        "a record the BLMOVE moved: started as attempt 1, kept until confirmed",
        before={"a": RESERVED},
        keys={TAKEN: [record("a")]},
        reply=[0, record("a"), 1],
        after={"a": {"state": "active", "attempts": "1", "started": RECENT, "reserved": "0"}},
        keys_after={TAKEN: [record("a")]},
    ),
    Case(
        "sent again after a lost reply: the same record and attempt, charged once",
        before={"a": RESERVED},
        keys={TAKEN: [record("a")]},
        sent=2,
        reply=[0, record("a"), 1],
        after={"a": {"attempts": "1", "reserved": "0"}},
    ),
    Case(
        "confirmed: dropped and the list deleted, nothing charged again",
        before={"a": {**HELD, "attempts": "1", "reserved": "0", "started": "now-5"}},
        keys={TAKEN: [record("a")]},
        args={"confirmed": confirming("a")},
        reply=[0],
        after={"a": {"attempts": "1", "started": "now-5"}},
        keys_after={TAKEN: ABSENT},
    ),
    Case(
        "the last reply's records confirmed, a new one behind them: they go, it starts",
        before={"a": {**HELD, "attempts": "1", "reserved": "0"}, "b": RESERVED},
        ids=("a", "b"),
        keys={TAKEN: [record("a"), record("b")]},
        args={"confirmed": confirming("a")},
        reply=[0, record("b"), 1],
        after={"a": {"attempts": "1"}, "b": {"attempts": "1", "reserved": "0"}},
        keys_after={TAKEN: [record("b")]},
    ),
    Case(
        "the same token for another task is no confirmation (tokens count one task's deliveries)",
        before={"a": {**HELD, "attempts": "1", "reserved": "0"}, "b": RESERVED},
        ids=("a", "b"),
        keys={TAKEN: [record("a"), record("b")]},
        args={"confirmed": confirming("z")},
        reply=[0, record("a"), 1, record("b"), 1],
        after={"a": {"attempts": "1"}, "b": {"attempts": "1"}},
    ),
    Case(
        "a confirmed record behind an unconfirmed one (a lost reply in between): it goes alone",
        before={"a": RESERVED, "b": {**HELD, "attempts": "1", "reserved": "0"}},
        ids=("a", "b"),
        keys={TAKEN: [record("a"), record("b")]},
        args={"confirmed": confirming("b")},
        reply=[0, record("a"), 1],
        after={"a": {"attempts": "1"}, "b": {"attempts": "1"}},
        keys_after={TAKEN: [record("a")]},
    ),
    Case(
        "records left unconfirmed expire with the lease (a dead worker's list goes)",
        before={"a": RESERVED},
        keys={TAKEN: [record("a")]},
        reply=[0, record("a"), 1],
        keys_after={TAKEN: TTL(True, at_most_ms=LEASE_MS)},
    ),
    *[
        Case(
            f"token of {who}: refused (0), nothing charged",
            before={"a": RESERVED},
            keys={TAKEN: [record("a", token)]},
            reply=[0, record("a", token), 0],
            after={"a": {"attempts": "0", "reserved": "1", "started": ABSENT}},
        )
        for who, token in STALE_TOKENS.items()
    ],
    Case(
        "reserved, its lease run out (the worker stalled): refused, uncharged, for recovery",
        before={"a": {**RESERVED, "lease": "now-1"}},
        keys={TAKEN: [record("a")]},
        reply=[0, record("a"), 0],
        after={"a": {"attempts": "0", "reserved": "1"}},
    ),
    Case(
        "its start deadline passed while handed off: expired, never run",
        before={"a": {**RESERVED, "exp": "now-1"}},
        keys={TAKEN: [record("a")]},
        reply=[0, record("a"), 0],
        after={"a": {"state": "expired", "attempts": "0"}},
    ),
    Case(
        "wake-ups and unreadable entries are dropped; the record behind them starts",
        before={"a": RESERVED},
        keys={TAKEN: ["", "{not json", '["a"]', record("a")]},
        reply=[0, record("a"), 1],
        after={"a": {"attempts": "1"}},
        keys_after={TAKEN: [record("a")]},
    ),
    Case(
        "room for three: two more move from the inbox and start in this call; the head counts "
        "what is left there",
        before={"a": RESERVED, "b": RESERVED, "c": RESERVED},
        ids=("a", "b", "c"),
        keys={TAKEN: [record("a")], INBOX: [record("b"), record("c"), record("d")]},
        args={"room": 3},
        reply=[1, record("a"), 1, record("b"), 1, record("c"), 1],
        after={"a": {"attempts": "1"}, "b": {"attempts": "1"}, "c": {"attempts": "1"}},
        keys_after={INBOX: [record("d")], TAKEN: [record("a"), record("b"), record("c")]},
    ),
    Case(
        "no room beyond a record left unconfirmed: nothing more moves",
        before={"a": RESERVED},
        keys={TAKEN: [record("a")], INBOX: [record("b")]},
        reply=[1, record("a"), 1],
        keys_after={INBOX: [record("b")], TAKEN: [record("a")]},
    ),
    Case(
        "room, and a wake-up behind the records in the inbox: it is dropped on the way",
        before={"a": RESERVED},
        keys={INBOX: ["", record("a")]},
        args={"room": 2},
        reply=[0, record("a"), 1],
        keys_after={INBOX: ABSENT, TAKEN: [record("a")]},
    ),
    Case("nothing taken: nothing to do", before={}, reply=[], keys_after={TAKEN: ABSENT}),
)


@TABLE
def test_take(redis_url: str, case: Case) -> None:
    confirmed: list[Any] = case.args.get("confirmed", [])
    (call,) = take_calls(SETTINGS, "q", WORKER, LEASE_MS, confirmed, 0, case.args.get("room", 1))
    run_case(redis_url, case, call)


def test_the_script_runs_once_the_blocked_pop_is_served(redis_url: str) -> None:
    """What saves the round trip: pipelined behind a BLMOVE that blocks, the take runs only
    when a hand-off arrives, and charges it before either reply leaves the server."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    for name, value in {**RESERVED, "lease": str(int(r.time()[0]) * 1000 + 60_000)}.items():
        r.hset(QK.task("a"), name, value)
    blmove, take = take_calls(SETTINGS, "q", WORKER, LEASE_MS, [], 5, 1)
    assert blmove.command[0] == "BLMOVE"
    loader = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    assert loader.execute(take) == []  # (loads the function library, if it was not yet)
    loader.close()

    async def wait_and_take() -> list[Any]:
        a = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            pipe = a.pipeline(transaction=False)
            pipe.execute_command(*blmove.command)
            pipe.execute_command(*lua.fcall_args(str(take.script), take.keys, take.args))
            return list(await pipe.execute())
        finally:
            await a.aclose()

    async def scenario() -> list[Any]:
        waiting = asyncio.create_task(wait_and_take())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert r.hget(QK.task("a"), "attempts") == "0"  # the take waits with the pop
        r.rpush(QK.inbox(WORKER), record("a"))
        return await asyncio.wait_for(waiting, 5)

    try:
        moved, started = asyncio.run(scenario())
        assert moved == record("a") and started == [0, record("a"), 1]
        assert r.hget(QK.task("a"), "attempts") == "1"
    finally:
        r.close()


def test_a_dequeue_beside_a_take_that_started_a_hand_off_offers_no_slot_for_it(redis_url: str) -> None:
    """A take and a dequeue in flight together (the inbox loop's and the exchange loop's): the
    take ran first and started the hand-off in the slot it held, but its reply had not reached
    the worker when it sent the dequeue, which still names that slot held. The slot must not be
    offered to enqueues again: a second task handed to the full worker would wait in its inbox
    until the first ends (or its lease runs out), while the queue looked idle to others."""
    from tests.lua.protocol import dequeue_call

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        r.flushall()
        for name, value in {**RESERVED, "lease": str(int(r.time()[0]) * 1000 + 60_000)}.items():
            r.hset(QK.task("a"), name, value)
        r.rpush(QK.inbox(WORKER), record("a"))  # handed off, as enqueue.lua does
        (take,) = take_calls(SETTINGS, "q", WORKER, LEASE_MS, [], 0, 1)
        assert backend.execute(take)[2] == 1  # started: the worker's one slot is busy

        def registered_after_dequeue(received: list[str]) -> str | None:
            r.hdel(QK.idle, WORKER)
            dequeue = dequeue_call(
                SETTINGS, "q", 1, LEASE_MS, WORKER, start_now=0, handoff_ms=60_000, held=1, received=received
            )
            backend.execute(dequeue)
            free = r.hget(QK.idle, WORKER)
            return None if free is None else str(free)

        # sent before the take's reply arrived: 'a' is not among what the worker received
        assert registered_after_dequeue([]) is None
        # sent after it (the held slot is then another take's, waiting): offered
        free = registered_after_dequeue(confirming("a"))
        assert free is not None and free.startswith("1:")
    finally:
        backend.close()
        r.close()


def test_a_dequeue_drops_the_records_the_worker_received_so_the_next_take_need_not(redis_url: str) -> None:
    """The ack and dequeue after a handed-off task run off the way from an enqueue to a start;
    the next take runs on it (issue 20 point 3). The dequeue, which reads the taken list anyway,
    drops what the worker confirmed receiving (and a wake-up with it), so the next take.lua has
    nothing to trim; a record not yet received stays, with what follows it."""
    from tests.lua.protocol import dequeue_call

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        r.flushall()
        r.rpush(QK.taken(WORKER), record("a"), "", record("b"), record("c"))

        def dequeue(received: list[str]) -> None:
            backend.execute(
                dequeue_call(
                    SETTINGS,
                    "q",
                    1,
                    LEASE_MS,
                    WORKER,
                    start_now=0,
                    handoff_ms=60_000,
                    held=1,
                    received=received,
                )
            )

        dequeue(confirming("a", "c"))  # b not received: it and c (after it) stay for the take
        assert r.lrange(QK.taken(WORKER), 0, -1) == [record("b"), record("c")]
        dequeue(confirming("b", "c"))
        assert r.exists(QK.taken(WORKER)) == 0
        r.config_resetstat()
        r.rpush(QK.inbox(WORKER), record("d"))
        for name, value in {**RESERVED, "lease": str(int(r.time()[0]) * 1000 + 60_000)}.items():
            r.hset(QK.task("d"), name, value)
        taken = take_calls(SETTINGS, "q", WORKER, LEASE_MS, confirming("b", "c"), 0.1, 1)
        assert backend.execute(Batch(taken))[1][2] == 1  # started
        assert "cmdstat_ltrim" not in r.info("commandstats")
    finally:
        backend.close()
        r.close()
