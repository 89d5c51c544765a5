"""Hand-off: a worker that drained its queue with slots to spare registers, and enqueue hands a
new task straight to its inbox (leased, reserved) instead of leaving it pending for a wake-up
and a dequeue. What must hold: slots are never exceeded, a registration lapses when not
renewed, a paused queue hands nothing off, a dead worker's hand-offs come back uncharged, and a
stopping worker leaves nothing behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from engine import admin
from engine.backend import Batch
from engine.client import Client
from engine.errors import ConnectionFailed
from engine.registry import Registry
from engine.task import Task
from engine.worker import Worker, WorkerOptions, loops, protocol
from engine.worker.messages import Take
from tests.engine.conftest import running_worker, wait_until

IDLE = "rediq:{h}:idle"


def register_idle(
    client: Client, worker: str, slots: int, handoff_ms: int, lease_ms: int = 30_000
) -> list[Any]:
    """What an idle worker's dequeue does: finds nothing and registers for hand-offs."""
    return list(
        client.backend.execute(
            protocol.dequeue_call(
                client.settings, "h", slots, lease_ms, worker, start_now=slots, handoff_ms=handoff_ms
            )
        )
    )


def attempts_recorded(task_type: str) -> tuple[Registry, list[int]]:
    """A registry whose task type (queue "h") records the attempt of each run, and that list."""
    registry = Registry()
    runs: list[int] = []

    @registry.task(task_type, queue="h")
    async def record(ctx: Any, payload: Any) -> None:
        runs.append(ctx.attempt)

    return registry, runs


def slow_tasks_counted(seconds: float) -> tuple[Registry, Callable[[], int]]:
    """A registry whose task type "slow" (queue "h") takes ``seconds`` and returns its attempt,
    and a function giving the most that ran at once."""
    registry = Registry()
    running, most = 0, 0

    @registry.task("slow", queue="h")
    async def slow(ctx: Any, payload: Any) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(seconds)
        running -= 1
        return int(ctx.attempt)

    return registry, lambda: most


async def test_an_idle_worker_is_handed_new_tasks_and_never_exceeds_its_slots(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry, peak = slow_tasks_counted(0.2)
    async with running_worker(registry, redis_url, ["h"], concurrency=2) as worker:
        await wait_until(lambda: raw.hexists(IDLE, worker.id))
        assert str(raw.hget(IDLE, worker.id)).startswith("2:")
        results = [client.enqueue("slow", i, queue="h") for i in range(6)]
        # the first two went straight to the worker, the registration then used up
        assert [r.state for r in results[:2]] == ["active", "active"]
        await wait_until(lambda: all(client.get_task(r.id).state == "completed" for r in results))  # type: ignore[union-attr]
        assert worker.handed_off >= 2
    assert peak() == 2
    for r in results:
        info = client.get_task(r.id)
        assert info is not None and info.attempts == 1 and info.result == 1


async def test_a_hand_off_during_an_exchange_does_not_take_a_slot_that_exchange_fills(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    """An exchange dequeues for the slot A leaves free; a hand-off (B) that arrives while that
    round trip is in flight must not take that slot too, or the dequeued task (C) would make
    three tasks run on two slots. (A's start mark no longer rides in that exchange: the inbox
    loop sends it before A runs, so which exchange comes next, and whether a poll renewed the
    registration meanwhile, varies; C may be handed off too, and must then wait its turn.)"""
    registry, peak = slow_tasks_counted(0.3)
    async with running_worker(registry, redis_url, ["h"], concurrency=2) as worker:
        await wait_until(lambda: raw.hexists(IDLE, worker.id))
        real_execute = worker.backend.execute
        armed = True

        async def execute(request: Any) -> Any:
            nonlocal armed
            calls = request.calls if isinstance(request, Batch) else [request]
            if armed and any(c.script == "dequeue" for c in calls) and worker.handed_off == 1:
                armed = False
                b = client.enqueue("slow", "B", queue="h")  # the registration's last free slot
                c = client.enqueue("slow", "C", queue="h")  # pending, for this dequeue (or handed)
                assert b.state == "active" and c.state in ("active", "pending")
                await wait_until(lambda: worker.handed_off >= 2)  # B arrived mid-exchange
            return await real_execute(request)

        worker.backend.execute = execute  # type: ignore[method-assign]
        a = client.enqueue("slow", "A", queue="h")
        assert a.state == "active"
        await wait_until(lambda: not armed)
        await wait_until(lambda: raw.zcard("rediq:{h}:completed") == 3)
    assert peak() == 2


def _is_take(request: Any) -> bool:
    return isinstance(request, Batch) and any(c.script == "take" for c in request.calls)


async def test_a_hand_off_starts_in_the_round_trip_that_takes_it(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    """Latency (issue 20): an idle worker's inbox loop waits with a BLMOVE and take.lua in one
    pipeline, so a hand-off is charged and started without a start mark's round trip; its
    handler runs before the loop writes its next wait (the command's client path would delay
    it). In order: the take that brought the task, its handler, the next take."""
    registry = Registry()
    events: list[tuple[str, str]] = []

    @registry.task("mark", queue="h")
    async def mark(ctx: Any, payload: Any) -> None:
        events.append(("handler", ctx.id))

    async with running_worker(registry, redis_url, ["h"], concurrency=2) as worker:
        await wait_until(lambda: raw.hexists(IDLE, worker.id))
        real_execute = worker.backend.execute

        async def execute(request: Any) -> Any:
            calls = request.calls if isinstance(request, Batch) else [request]
            if _is_take(request):
                events.append(("take sent", ""))
            events.extend(("start", str(c.args[3])) for c in calls if c.script == "start")
            reply = await real_execute(request)
            if _is_take(request):
                events.extend(("taken", job.id) for job, _ in protocol.parse_taken("h", reply[-1])[1])
            return reply

        worker.backend.execute = execute  # type: ignore[method-assign]
        await wait_until(lambda: ("take sent", "") in events)  # idle, waiting in a held slot
        ids = []
        for _ in range(3):
            task = client.enqueue("mark", None, queue="h")
            assert task.state == "active"  # handed off
            ids.append(task.id)
            await wait_until(lambda t=task.id: ("handler", t) in events and events[-1] == ("take sent", ""))  # type: ignore[misc]
            at = events.index(("taken", task.id))
            expected = [("taken", task.id), ("handler", task.id), ("take sent", "")]
            assert events[at : at + 3] == expected, events
        assert not [e for e in events if e[0] == "start"]  # no start mark for any of them
        assert worker.handed_off == 3
    for task_id in ids:
        info = client.get_task(task_id)
        assert info is not None and info.state == "completed" and info.attempts == 1


async def test_a_take_whose_reply_is_lost_runs_its_task_once_charged_once(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    """The take ran (the task charged and started) but its reply never arrived: the record stays
    in the taken list until confirmed, so the next take returns it and the task runs at once, as
    attempt 1, rather than waiting out its lease and being recovered as an attempt its worker
    died in (dead, with max_retry 0, never having run)."""
    registry, runs = attempts_recorded("once")

    async with running_worker(registry, redis_url, ["h"], concurrency=2, lease_s=60) as worker:
        await wait_until(lambda: raw.hexists(IDLE, worker.id))
        real_execute = worker.backend.execute
        takes_sent: list[Any] = []
        lost: list[Any] = []

        async def execute(request: Any) -> Any:
            takes_sent.extend([request] if _is_take(request) else [])
            reply = await real_execute(request)
            if _is_take(request) and reply[-1] and not lost:
                lost.append(reply)
                raise ConnectionFailed("reply lost (test)")
            return reply

        worker.backend.execute = execute  # type: ignore[method-assign]
        await wait_until(lambda: bool(takes_sent))  # (not one sent before the line above)
        assert worker.core.slots.held_for_take == 1
        task = client.enqueue("once", None, queue="h", max_retry=0)
        assert task.state == "active"
        await wait_until(lambda: getattr(client.get_task(task.id), "state", None) == "completed", timeout=5)
        assert lost, "no take reply was lost"
    assert runs == [1]
    info = client.get_task(task.id)
    assert info is not None and info.attempts == 1
    assert raw.exists(f"rediq:{{h}}:taken:{worker.id}") == 0  # confirmed, or taken back at stop


async def test_a_worker_sends_its_first_take_on_its_first_dequeue_reply_not_a_whole_wait_later(
    redis_url: str, client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the queue's first dequeue answers, whether it is drained is unknown; the inbox loop
    waits for that reply, not in a plain pop for a whole wait (30 s here). Without it a take
    came a wait late at start, and whenever the idle poll's round and the wait fell into step."""
    monkeypatch.setattr(loops, "INBOX_WAIT_S", 30.0)
    registry, runs = attempts_recorded("once")
    async with running_worker(registry, redis_url, ["h"], concurrency=2) as worker:
        await wait_until(lambda: worker.core.slots.held_for_take == 1, timeout=5)
        assert "h" in worker.core.takes.in_flight
        task = client.enqueue("once", None, queue="h")
        assert task.state == "active"
        await wait_until(lambda: getattr(client.get_task(task.id), "state", None) == "completed", timeout=5)
    assert runs == [1] and worker.handed_off == 1


async def test_a_run_cancelled_after_a_lost_take_hands_back_what_the_take_started(
    redis_url: str, client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Worker.run()`` cancelled just after a take's reply was lost: what the take started is
    taken back and handed back uncharged with the run's other tasks. Left in the taken list, it
    stayed active, charged, until its lease expired (60 s here), and was then counted as an
    attempt its worker died in: with ``max_retry 0``, dead without its handler having run. Its
    handler, cancelled before its first step, must not hold the run's end for the whole bound
    of each step (5 s here): the core is told, as ``run_task`` would have told it."""
    monkeypatch.setattr(loops, "ABANDON_RELEASE_S", 5.0)
    registry, _ = attempts_recorded("once")
    worker = Worker(registry, redis_url, WorkerOptions(queues=["h"], concurrency=2, lease_s=60))
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: "h" in worker.core.takes.in_flight)
    real_execute = worker.backend.execute
    takes_sent: list[Any] = []
    cancelled_at: list[float] = []

    async def execute(request: Any) -> Any:
        takes_sent.extend([request] if _is_take(request) else [])
        reply = await real_execute(request)
        if _is_take(request) and reply[-1] and not run.cancelling():
            run.cancel()
            cancelled_at.append(time.monotonic())
            raise ConnectionFailed("reply lost (test)")
        return reply

    worker.backend.execute = execute  # type: ignore[method-assign]
    await wait_until(lambda: bool(takes_sent))
    task = client.enqueue("once", None, queue="h", max_retry=0)
    assert task.state == "active"  # handed off
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 10)
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 2.5
    info = client.get_task(task.id)
    assert info is not None and (info.state, info.attempts) == ("pending", 0), info
    # the record taken back stays unconfirmed (no take follows): it expires with the lease, and
    # its token is stale meanwhile
    assert 0 < raw.pttl(f"rediq:{{h}}:taken:{worker.id}") <= 60_000


async def test_a_one_slot_worker_whose_slot_a_take_holds_stays_registered_for_hand_offs(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    """The held slot is offered to enqueues (dequeue.lua ARGV 12): without it, each idle poll
    of a worker whose every free slot a take held withdrew its registration, and its hand-offs
    went pending, to wait for a wake-up and a dequeue."""
    registry, runs = attempts_recorded("once")
    async with running_worker(registry, redis_url, ["h"], concurrency=1, poll_interval_s=0.05) as worker:
        await wait_until(lambda: "h" in worker.core.takes.in_flight)
        real_execute = worker.backend.execute
        dequeues: list[Any] = []

        async def execute(request: Any) -> Any:
            reply = await real_execute(request)
            calls = request.calls if isinstance(request, Batch) else [request]
            dequeues.extend(c for c in calls if c.script == "dequeue")
            return reply

        worker.backend.execute = execute  # type: ignore[method-assign]
        await wait_until(lambda: len(dequeues) >= 2)  # idle polls while the take holds the slot
        assert worker.core.slots.held_for_take == 1
        assert str(raw.hget(IDLE, worker.id)).startswith("1:")
        task = client.enqueue("once", None, queue="h")
        assert task.state == "active"  # handed off
        await wait_until(lambda: getattr(client.get_task(task.id), "state", None) == "completed", timeout=5)
    assert runs == [1] and worker.handed_off == 1


async def test_a_one_slot_worker_waiting_for_a_hand_off_gives_its_slot_to_a_due_task(
    redis_url: str, client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that becomes pending by another way (here: a scheduled one falling due) is leased
    reserved while the only slot waits for a hand-off: the worker wakes its own wait (a '' pushed
    to the inbox) instead of leaving the task for the rest of it (30 s here)."""
    registry = Registry()
    ran: list[float] = []

    @registry.task("due", queue="h")
    async def due(ctx: Any, payload: Any) -> None:
        ran.append(time.monotonic())

    async with running_worker(registry, redis_url, ["h"], concurrency=1, poll_interval_s=0.1) as worker:
        await wait_until(lambda: worker.core.slots.held_for_take == 1)
        monkeypatch.setattr(loops, "INBOX_WAIT_S", 30.0)  # from the next take on

        def waiting_long() -> bool:
            in_flight = worker.core._inflight.values()
            return any(isinstance(r, Take) and r.wait_s == 30.0 for x in in_flight for r in x.requests)

        await wait_until(waiting_long)
        task = client.enqueue("due", None, queue="h", delay=0.3)
        assert task.state == "scheduled"
        await wait_until(lambda: bool(ran), timeout=5)
        await wait_until(lambda: getattr(client.get_task(task.id), "state", None) == "completed")
    info = client.get_task(task.id)
    assert info is not None and info.attempts == 1


def test_enqueue_hands_off_only_as_many_as_the_free_slots_less_the_inbox(
    client: Client, raw: redis.Redis
) -> None:
    register_idle(client, "w1", 3, 5_000)
    assert str(raw.hget(IDLE, "w1")).startswith("3:")
    results = client.enqueue_many([Task(type="t", queue="h") for _ in range(5)])
    assert [r.state for r in results] == ["active"] * 3 + ["pending"] * 2
    assert raw.llen("rediq:{h}:inbox:w1") == 3
    assert not raw.hexists(IDLE, "w1")  # all three slots promised
    task = raw.hgetall(f"rediq:{{h}}:t:{results[0].id}")
    assert (task["state"], task["reserved"], task["worker"], task["attempts"]) == ("active", "1", "w1", "0")
    assert 0 < raw.pttl("rediq:{h}:inbox:w1") <= 30_000  # a dead worker's inbox expires
    # the worker's next dequeue takes the two pending, and does not count the inbox as free
    reply = register_idle(client, "w1", 3, 5_000)
    assert len(protocol.parse_dequeue("h", reply)) == 2
    assert not raw.hexists(IDLE, "w1")  # 3 slots - 2 leased - 3 in the inbox: nothing to offer


def test_a_lapsed_registration_is_not_used_and_is_removed(client: Client, raw: redis.Redis) -> None:
    register_idle(client, "gone", 4, 50)
    time.sleep(0.1)
    result = client.enqueue("t", None, queue="h")
    assert result.state == "pending"
    assert not raw.hexists(IDLE, "gone") and raw.llen("rediq:{h}:inbox:gone") == 0


def test_a_paused_queue_hands_nothing_off(client: Client, raw: redis.Redis) -> None:
    client.enqueue("t", None, queue="h")  # the queue exists (pause names a known queue)
    register_idle(client, "w1", 4, 5_000)  # takes that one, still registers 3 free slots
    client.call(admin.pause, "h")
    assert client.enqueue("t", None, queue="h").state == "pending"
    assert raw.llen("rediq:{h}:inbox:w1") == 0


def test_hand_offs_to_a_dead_worker_come_back_uncharged(client: Client, raw: redis.Redis) -> None:
    register_idle(client, "dead-worker", 2, 5_000, lease_ms=200)
    task = client.enqueue("t", None, queue="h", max_retry=0)
    assert task.state == "active"
    time.sleep(0.3)  # the lease runs out; nobody took the task from the inbox
    reply = register_idle(client, "w2", 1, 0)  # any dequeue recovers expired leases first
    jobs = protocol.parse_dequeue("h", reply)
    assert [j.id for j in jobs] == [task.id] and jobs[0].attempt == 1  # its first attempt
    info = client.get_task(task.id)
    assert info is not None and info.state == "active" and info.attempts == 1
    assert any("expired before it started" in h.note for h in info.history)


async def test_a_stopping_worker_withdraws_and_leaves_nothing_behind(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    registry = Registry()
    gate = asyncio.Event()

    @registry.task("wait", queue="h")
    async def wait(ctx: Any, payload: Any) -> None:
        await gate.wait()

    async with running_worker(registry, redis_url, ["h"], concurrency=1, grace_s=0.2) as worker:
        await wait_until(lambda: raw.hexists(IDLE, worker.id))
        first = client.enqueue("wait", None, queue="h")
        await wait_until(lambda: worker.in_flight == 1)
        # its only slot is busy: a task enqueued now stays pending
        second = client.enqueue("wait", None, queue="h")
        assert first.state == "active" and second.state == "pending"
    states = {client.get_task(t.id).state for t in (first, second)}  # type: ignore[union-attr]
    assert states == {"pending"}  # the running one was handed back after the grace period
    assert not raw.hexists(IDLE, worker.id)
    assert raw.llen(f"rediq:{{h}}:inbox:{worker.id}") == 0
    assert client.get_task(first.id).attempts == 0  # type: ignore[union-attr]  # refunded


async def test_a_hand_off_that_lands_as_the_worker_stops_runs_once_and_its_outcome_is_sent(
    redis_url: str, client: Client, raw: redis.Redis
) -> None:
    """Found by the fault harness's deep profile (2026-12-05): a stopping worker's exchange
    loop ended as soon as nothing ran, before the drain had taken back its hand-offs. A task
    handed to it then (its registration is withdrawn by the drain) was started by its inbox
    loop's take or by the drain, ran, and its outcome was never sent: the task stayed active
    until its lease ran out, then ran again (or, a cancel requested, ended cancelled)."""
    registry, runs = attempts_recorded("rec")
    worker = Worker(registry, redis_url, WorkerOptions(queues=["h"], concurrency=1))
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: raw.hexists(IDLE, worker.id))
    real_execute = worker.backend.execute
    takes: list[float] = []

    async def execute(request: Any) -> Any:
        if not _is_take(request):
            return await real_execute(request)
        takes.append(time.monotonic())
        reply = await real_execute(request)
        if worker.core.stopping:  # its reply lands after the exchange loop's next poll (0.5 s)
            await asyncio.sleep(1.0)
        return reply

    worker.backend.execute = execute  # type: ignore[method-assign]
    await wait_until(lambda: bool(takes))  # a take waits in the inbox
    worker.request_stop()
    task = client.enqueue("rec", None, queue="h")  # still registered: handed to the stopping worker
    assert task.state == "active"
    await asyncio.wait_for(run, 30)
    info = client.get_task(task.id)
    assert runs == [1] and info is not None and info.state == "completed" and info.attempts == 1


async def test_an_outcome_that_overtakes_its_start_mark_is_sent_again(
    redis_url: str, client: Client, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis lost the start script but not the ack script (a restart, then acks before the first
    hand-off): the backend reloads it and re-sends the start mark after the batch's ack ran.
    The ack, stale by then, must go again instead of leaving the task active for a lease.
    (EVALSHA mode only: a function library is loaded and lost as a whole.)"""
    from engine import lua

    monkeypatch.setenv(lua.MODE_ENV, "eval")

    registry, runs = attempts_recorded("quick")

    async with running_worker(registry, redis_url, ["h"], concurrency=4, lease_s=30) as worker:
        await wait_until(lambda: raw.hexists(IDLE, worker.id))
        worker.core.disable_take()  # the path under test: a hand-off popped, then its start mark
        raw.script_flush()
        for name in ("ack", "fail", "dequeue", "enqueue", "extend"):
            raw.script_load(lua.script(name).source)
        task = client.enqueue("quick", None, queue="h")
        assert task.state == "active"  # handed off
        await wait_until(lambda: getattr(client.get_task(task.id), "state", None) == "completed", timeout=10)
    assert runs == [1]
    info = client.get_task(task.id)
    assert info is not None and info.attempts == 1
