"""The console's whole-system reads (engine/overview.py, engine/serverinfo.py, engine/control.py)
against a real server."""

from __future__ import annotations

import redis

from engine import control, inspect, overview, serverinfo
from engine.backend import cmd
from engine.client import Client
from engine.overview import FoundKind, TaskQuery
from engine.task import TaskState
from engine.worker import protocol
from tests.tui.data import make_dead


def test_rate_per_min_is_right_from_the_first_second() -> None:
    # a steady 60/min: the previous minute had 60, the current one so far its share
    assert overview.rate_per_min((0, 60, 15), 15_000) == 60.0
    assert overview.rate_per_min((0, 60, 0), 0) == 60.0  # the first second of a minute
    assert overview.rate_per_min((0, 60, 45), 45_000) == 60.0
    assert overview.rate_per_min((), 10_000) == 0.0
    assert overview.rate_per_min((7,), 30_000) == 7.0


def test_attention_state_prefers_dead_then_retry_active_pending() -> None:
    assert overview.attention_state({"pending": 3, "dead": 1, "retry": 2}) is TaskState.DEAD
    assert overview.attention_state({"pending": 3, "retry": 2, "active": 1}) is TaskState.RETRY
    assert overview.attention_state({"pending": 3, "active": 1}) is TaskState.ACTIVE
    assert overview.attention_state({"pending": 3}) is TaskState.PENDING
    assert overview.attention_state({}) is TaskState.PENDING


def test_queue_rows_tell_running_from_reserved(redis_url: str) -> None:
    with Client(redis_url) as c:
        for i in range(5):
            c.enqueue("t", {"i": i}, queue="work", id=f"w-{i}")
        # a worker leases 4: 1 starts now, 3 are prefetched (reserved, not charged)
        c.backend.execute(protocol.dequeue_call(c.settings, "work", 4, 60_000, "w1", start_now=1))
        rows = c.call(overview.queue_rows, ["work"])
    assert len(rows) == 1
    row = rows[0]
    assert row.summary.count("active") == 4
    assert (row.running, row.reserved) == (1, 3)


def test_find_names_a_queue_a_worker_or_a_task_in_any_queue(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 1)
        c.enqueue("mail:send", {}, queue="mail", id="needle-42")
        c.call(
            protocol.beat_registry, "host-a:123:abc", {"host": "host-a", "pid": 123, "queues": "mail"}, 60_000
        )
        q = c.call(overview.find, "payment")
        assert (q.kind, q.name, q.state) == (FoundKind.QUEUE, "payment", "dead")
        t = c.call(overview.find, "needle-42")
        assert (t.kind, t.name, t.queue, t.state) == (FoundKind.TASK, "needle-42", "mail", "pending")
        t2 = c.call(overview.find, " mail|needle-42 ")
        assert (t2.kind, t2.queue) == (FoundKind.TASK, "mail")
        w = c.call(overview.find, "host-a:123:abc")
        assert (w.kind, w.name) == (FoundKind.WORKER, "host-a:123:abc")
        w2 = c.call(overview.find, "host-a:123")
        assert (w2.kind, w2.name) == (FoundKind.WORKER, "host-a:123:abc")
        assert c.call(overview.find, "nope").kind is FoundKind.NOTHING
        assert c.call(overview.find, "   ").kind is FoundKind.NOTHING


def test_all_tasks_across_queues_and_states_with_counts_paging_and_filters(redis_url: str) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 3)
        for i in range(4):
            c.enqueue("order:ship", {"city": "Berlin" if i % 2 else "Paris"}, queue="shipping", id=f"s-{i}")
        c.enqueue("mail:send", {"to": "x"}, queue="mail", id="m-0")
        page = c.call(overview.all_tasks, TaskQuery(), 0, 5)
        assert page.counts["dead"] == 3 and page.counts["pending"] == 5
        assert page.matched == 8 and page.queues == 3 and len(page.tasks) == 5
        rest = c.call(overview.all_tasks, TaskQuery(), 5, 5)
        assert len(rest.tasks) == 3
        seen = {t.id for t in page.tasks} | {t.id for t in rest.tasks}
        assert len(seen) == 8  # pages neither overlap nor skip
        dead = c.call(overview.all_tasks, TaskQuery(states=(TaskState.DEAD,)), 0, 50)
        assert {t.id for t in dead.tasks} == {"dead-000", "dead-001", "dead-002"}
        berlin = c.call(overview.all_tasks, TaskQuery(text="berlin"), 0, 50)
        assert {t.id for t in berlin.tasks} == {"s-1", "s-3"} and berlin.matched == 2
        ship = c.call(overview.all_tasks, TaskQuery(task_type="SHIP", queues=("shipping",)), 0, 1)
        assert len(ship.tasks) == 1 and ship.matched == 4
        fingerprint = c.backend.execute(
            cmd("HGET", c.settings.keyspace.queue("payment").task("dead-001"), "fp")
        )
        by_fp = c.call(overview.all_tasks, TaskQuery(fingerprint=fingerprint[:6]), 0, 50)
        assert "dead-001" in {t.id for t in by_fp.tasks}
        assert all(t.state is TaskState.DEAD for t in by_fp.tasks)
        bounded = c.call(overview.all_tasks, TaskQuery(text="zzz"), 0, 50, 3)
        assert bounded.matched is None and bounded.examined == 3  # says how far it looked


def test_server_page_history_and_memory_are_read(redis_url: str, raw: redis.Redis) -> None:
    with Client(redis_url) as c:
        make_dead(c, "payment", 2)
        c.enqueue("x", {}, queue="mail", id="m-1")
        page = c.call(serverinfo.server_page)
        assert page.version != "?" and page.role == "master" and page.queue_count == 2
        assert page.policy == "noeviction" and page.eviction_safe
        raw.config_set("maxmemory-policy", "allkeys-lru")
        assert not c.call(serverinfo.server_page).eviction_safe
        raw.config_set("maxmemory-policy", "noeviction")
        memory = c.call(serverinfo.queue_memory)
        assert [m.queue for m in memory] == ["payment", "mail"]
        assert memory[0].tasks == 2 and memory[0].bytes > 0
        assert isinstance(c.call(serverinfo.slowlog), list)
        h = c.call(serverinfo.history, "payment")
        assert len(h.completed) == serverinfo.HISTORY_MINUTES == len(h.run_p50_s)


def test_stop_request_is_audited_and_consumed_once(redis_url: str) -> None:
    with Client(redis_url) as c:
        assert c.call(control.request_stop, "ghost") is False  # no such worker: nothing set
        c.call(protocol.beat_registry, "w-1", {"host": "h", "pid": 1}, 60_000)
        assert c.call(control.request_stop, "w-1") is True
        assert c.call(control.take_stop, "w-1") is True
        assert c.call(control.take_stop, "w-1") is False
        detail = c.call(overview.worker_detail, "w-1")
        assert detail is not None and detail.fields["host"] == "h" and not detail.stop_requested
        assert [e.action for e in c.call(inspect.audit, 5)] == ["worker.stop"]


async def test_a_worker_drains_and_stops_when_an_operator_asks(redis_url: str) -> None:
    """The console's S on any worker: a stop request in Redis that the worker honours at its
    next heartbeat (a slow task finishes first: a drain, not a kill)."""
    import asyncio

    from engine.registry import Registry
    from engine.worker import TaskContext, Worker, WorkerOptions

    registry = Registry()
    started = asyncio.Event()

    @registry.task("slow", queue="stopq")
    async def slow(ctx: TaskContext, payload: object) -> str:
        started.set()
        await asyncio.sleep(0.5)
        return "done"

    client = Client(redis_url)
    r = client.enqueue("slow", {}, queue="stopq")
    worker = Worker(registry, redis_url, WorkerOptions(queues=["stopq"], heartbeat_s=0.2))
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        assert client.call(control.request_stop, worker.id) is True
        await asyncio.wait_for(run, 20)  # returns on its own: no request_stop() from here
    finally:
        if not run.done():
            worker.request_stop()
            await asyncio.wait_for(run, 30)
    task = client.get_task(r.id)
    assert task is not None and task.state is TaskState.COMPLETED  # drained, not abandoned
    assert client.call(overview.worker_detail, worker.id) is None  # deregistered
    client.close()
