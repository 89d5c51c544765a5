"""Raw Redis state written by a buggy or older client: random missing hash fields, wrong
types, junk history and junk events. Readers (``get_task``, ``inspect.page``,
``inspect.queues``) never crash, and a real worker dequeuing such tasks neither crashes nor
stalls: every task ends retried, dead or completed, visible with an error (or expired, its
junk 'exp' read as a deadline that passed, saying so), and the invariant checker stays clean."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from engine import events, inspect, ops
from engine.client import Client
from engine.ops import Settings
from engine.registry import Registry
from engine.retry import Fixed
from engine.task import TaskState
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.engine.invariants import check_invariants
from tests.fuzz.conftest import examples

QUEUE = "fz"
BASE = f"rediq:{{{QUEUE}}}:"

junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "-1", "0", "1e309", "nan", "inf", "-inf", "1.5", "99999999999999999999", "null", "[]", "{}"]
    ),
    st.integers(min_value=-(2**63), max_value=2**63).map(str),
    st.floats(allow_nan=True).map(repr),
)
GOOD: dict[str, st.SearchStrategy[str]] = {
    "type": st.sampled_from(["ok", "boom", "unknown-type"]),
    "payload": st.sampled_from(['{"a":1}', "null", "[1,2]", '"s"', "{not json"]),
    "priority": st.integers(0, 100).map(str),
    "max_retry": st.integers(0, 3).map(str),
    "timeout": st.integers(100, 5000).map(str),
    "attempts": st.integers(0, 5).map(str),
    "enq": st.integers(0, 2**41).map(str),
    "due": st.integers(0, 2**41).map(str),
    "state": st.sampled_from([str(s) for s in TaskState] + ["bogus"]),
    "meta": st.sampled_from(['{"k":"v"}', "[]", '{"k":1}', "{", ""]),
    "deps": st.sampled_from(['["fz|x"]', "[]", "{", '"x"']),
    "progress": st.sampled_from(["50", "x", "-3", "1e999"]),
    "v": st.sampled_from(["0", "1", "2", "x"]),
    "seq": st.integers(0, 100).map(str),
    "lease": st.integers(0, 2**41).map(str),
    "cancel": st.sampled_from(["1", "0", "x"]),
}


@st.composite
def task_hash(draw: st.DrawFn, task_id: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in [*ops.TASK_FIELDS, "seq", "junkfield"]:
        if name == "id":
            if draw(st.booleans()):
                fields["id"] = draw(st.sampled_from([task_id, "", "other"]))
            continue
        choice = draw(st.integers(0, 3))  # missing, plausible, junk, plausible
        if choice == 0:
            continue
        if choice == 2 or name not in GOOD:
            fields[name] = draw(junk)
        else:
            fields[name] = draw(GOOD[name])
    return fields or {"junkfield": "1"}


history_entry = st.one_of(
    junk,
    st.lists(junk | st.integers(), max_size=4).map(json.dumps),
    st.just('[1700000000000,"pending","ok"]'),
)


FAR_FUTURE = [50 * 2**40, 1e300]


@st.composite
def raw_tasks(draw: st.DrawFn, due_now: bool = False) -> list[tuple[str, dict[str, str], list[str], float]]:
    """Up to 4 junk tasks. ``due_now``: their set scores (due time, lease expiry) have passed,
    so that a worker must deal with them now (a far-future score leaves the junk untouched
    until then: only the readers see it)."""
    n = draw(st.integers(1, 4))
    out = []
    for i in range(n):
        task_id = f"t{i}"
        out.append(
            (
                task_id,
                draw(task_hash(task_id)),
                draw(st.lists(history_entry, max_size=4)),
                draw(st.sampled_from([0.0, -1.0, 1000.0] + ([] if due_now else [f + i for f in FAR_FUTURE]))),
            )
        )
    return out


def write(r: redis.Redis, tasks: list[tuple[str, dict[str, str], list[str], float]], state: str) -> None:
    r.flushall()
    r.sadd("rediq:queues", QUEUE)
    for task_id, fields, history, score in tasks:
        r.hset(BASE + "t:" + task_id, mapping={name: value for name, value in fields.items()})
        if history:
            r.rpush(BASE + "h:" + task_id, *history)
        r.zadd(BASE + state, {task_id: score})


@given(tasks=raw_tasks(), state=st.sampled_from([str(s) for s in TaskState]))
@hsettings(max_examples=examples(150, 10_000))
def test_readers_survive_raw_state(
    redis_url: str, tasks: list[tuple[str, dict[str, str], list[str], float]], state: str
) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    client = Client(redis_url)
    try:
        write(r, tasks, state)
        for task_id, *_ in tasks:
            info = client.get_task(task_id, QUEUE)
            assert info is not None and info.queue == QUEUE
            assert client.get_task(task_id) is not None
        for s in TaskState:
            page = client.call(inspect.page, QUEUE, s)
            assert page.total == (len(tasks) if str(s) == state else 0)
        summaries = client.call(inspect.queues)
        assert [q.name for q in summaries] == [QUEUE]
    finally:
        client.close()
        r.close()


@given(channel=st.sampled_from([BASE + "events", "rediq:{x}:events", "junk", ""]), data=junk | st.binary())
@example(channel=BASE + "events", data='{"e":"pending","ids":"notalist","t":"x"}')
@example(channel=BASE + "events", data='{"e":"pending","ids":[1,{"a":2}],"p":"x"}')
@example(channel=BASE + "events", data='{"e":["x"]}')
def test_event_parser_drops_junk(channel: str, data: Any) -> None:
    event = events.parse(Settings(), channel, data)
    assert event is None or isinstance(event, events.Event)


app = Registry()


@app.task("ok", queue=QUEUE)
async def ok(ctx: TaskContext, payload: Any) -> Any:
    return payload


@app.task("boom", queue=QUEUE, retry=Fixed(0.05))
async def boom(ctx: TaskContext, payload: Any) -> Any:
    raise RuntimeError("boom")


async def _run_worker(url: str, r: redis.Redis, junk_events: list[str]) -> None:
    worker = Worker(
        app,
        url,
        WorkerOptions(
            queues=[QUEUE],
            concurrency=4,
            lease_s=1.0,
            poll_interval_s=0.05,
            maintenance_s=0.2,
            unknown_type_timeout_s=0,  # junk types go dead at once (through defer.lua), not wait an hour
        ),
    )
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.1)
        for data in junk_events:
            r.publish(BASE + "events", data)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            now_ms = int(r.time()[0]) * 1000 + 5_000
            due = sum(r.zcount(BASE + s, "-inf", now_ms) for s in ("pending", "active", "scheduled", "retry"))
            if due == 0:
                break
            await asyncio.sleep(0.05)
        assert not runner.done(), f"the worker stopped: {runner.exception() if runner.done() else ''}"
        # and it still serves: a well-formed task enqueued now completes
        client = Client(url)
        probe = client.enqueue("ok", {"probe": True}, queue=QUEUE, id="probe")
        client.close()
        for _ in range(100):
            if r.hget(BASE + "t:" + probe.id, "state") == "completed":
                break
            await asyncio.sleep(0.05)
        assert r.hget(BASE + "t:" + probe.id, "state") == "completed", "the worker stopped serving"
    finally:
        worker.request_stop()
        await asyncio.wait_for(runner, 20)


@given(
    tasks=raw_tasks(due_now=True),
    state=st.sampled_from(["pending", "scheduled", "retry", "active"]),
    junk_events=st.lists(junk, max_size=3),
)
@hsettings(max_examples=examples(12, 300))
@example(
    tasks=[("t0", {"type": "boom", "max_retry": "junk", "attempts": "0", "state": "pending"}, [], 0.0)],
    state="pending",
    junk_events=[],
)
def test_worker_survives_raw_state(
    redis_url: str,
    tasks: list[tuple[str, dict[str, str], list[str], float]],
    state: str,
    junk_events: list[str],
) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        write(r, tasks, state)
        asyncio.run(_run_worker(redis_url, r, junk_events))
        assert r.zcard(BASE + "pending") == 0, "pending tasks left behind"
        assert check_invariants(r) == []
        for task_id, fields, *_ in tasks:
            state_now = r.hget(BASE + "t:" + task_id, "state")
            if state_now == "cancelled" and fields.get("cancel") == "1":
                continue  # a cancel was requested: lease recovery (or the worker) honours it
            if state_now in ("retry", "active"):
                # still retrying (junk attempts/max_retry can allow many, with growing backoff)
                # or running: in its set (the checker agrees) and it says what went wrong
                assert r.zscore(BASE + state_now, task_id) is not None
                assert state_now == "active" or r.hget(BASE + "t:" + task_id, "error")
                continue
            if state_now == "expired":
                # its 'exp' field read as a start deadline that has passed: never run, says why
                assert "exp" in fields, (task_id, fields)
                reason = str(r.hget(BASE + "t:" + task_id, "reason") or "")
                assert reason.startswith("not started by its deadline"), (task_id, reason)
                continue
            assert state_now in ("completed", "dead"), (task_id, state_now)
            if state_now == "dead":
                assert r.hget(BASE + "t:" + task_id, "error"), "a dead task says why"
    finally:
        r.close()
