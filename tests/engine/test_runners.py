"""Handler runners against a real server: sync handlers past their timeout keep their slots,
cancels and timeouts of sync handlers are recorded as such, context variables reach threads,
``pool="process"`` kills children at their timeout, a handler's own TimeoutError keeps its
message, background loops survive exceptions, unknown task types wait for a worker that knows
them, and a second SIGTERM ends the grace period."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from engine import inspect
from engine.client import Client
from engine.config import load_config
from engine.errors import InvalidConfig
from engine.metrics import LabelPolicy, WorkerMetrics, WorkerStateCollector
from engine.ops import Settings
from engine.registry import Registry
from engine.retry import Fixed
from engine.task import TaskState
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.engine import pool_apps
from tests.engine.conftest import running_worker, spawn_worker, wait_until, wait_until_sync


def state_of(client: Client, task_id: str) -> TaskState | None:
    info = client.get_task(task_id)
    return None if info is None else info.state


def runs(raw: redis.Redis, task_id: str) -> list[str]:
    return [str(run) for run in raw.lrange(f"test:runs:{task_id}", 0, -1)]


# ---------------------------------------------------------------------------------- threads


async def test_hung_sync_handlers_keep_their_slots_and_leases_until_their_threads_return(
    redis_url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rediq.worker")
    registry = Registry()
    release = threading.Event()
    lock = threading.Lock()
    trail: list[tuple[str, int, str]] = []
    healthy_calls = Counter[str]()

    @registry.task("hang", queue="h", max_retry=1, retry=Fixed(seconds=0.01, jitter=0))
    def hang(ctx: TaskContext, payload: Any) -> str:
        with lock:
            trail.append((ctx.id, ctx.attempt, "start"))
        release.wait(60)
        with lock:
            trail.append((ctx.id, ctx.attempt, "end"))
        return "late"

    @registry.task("healthy", queue="h", max_retry=0)
    def healthy(ctx: TaskContext, payload: Any) -> str:
        healthy_calls[ctx.id] += 1
        return "fine"

    client = Client(redis_url)
    hung = [client.enqueue("hang", None, queue="h", timeout=0.3, max_retry=1) for _ in range(2)]
    # prefetch 2: the healthy task below is leased reserved while both slots are held
    async with running_worker(
        registry, redis_url, ["h"], concurrency=2, prefetch=2, lease_s=1.0, poll_interval_s=0.05
    ) as worker:
        # both handlers ran past their deadline: the worker says so, in its registry entry too
        await wait_until(lambda: [w.overdue for w in client.call(inspect.workers)] == [2])
        assert worker.overdue_slots == 2
        assert any(
            "2 of 2 slots held by handlers past their timeout" in r.getMessage() for r in caplog.records
        )
        # their leases are kept (extended past the first lease) and nothing ran them again
        qk = Settings().keyspace.queue("h")
        first_lease = {t.id: int(raw.hget(qk.task(t.id), "lease") or 0) for t in hung}
        await wait_until(
            lambda: all(int(raw.hget(qk.task(t.id), "lease") or 0) > first_lease[t.id] + 500 for t in hung),
            timeout=15,
        )
        for t in hung:
            info = client.get_task(t.id)
            assert info is not None and info.state == TaskState.ACTIVE and info.attempts == 1
        # a healthy task is not charged on a worker with no free slot (it was: it timed out unrun)
        ok = client.enqueue("healthy", None, queue="h", timeout=0.3, max_retry=0)
        await wait_until(lambda: state_of(client, ok.id) != TaskState.PENDING)
        info = client.get_task(ok.id)
        assert info is not None and info.attempts == 0 and info.state == TaskState.ACTIVE
        release.set()
        await wait_until(
            lambda: all(state_of(client, t) == TaskState.COMPLETED for t in [ok.id, *(h.id for h in hung)])
        )
        assert worker.overdue_slots == 0
    assert healthy_calls == {ok.id: 1}
    for t in hung:
        mine = [(a, what) for task_id, a, what in trail if task_id == t.id]
        # the retry started only after the timed-out attempt's thread returned
        assert mine == [(1, "start"), (1, "end"), (2, "start"), (2, "end")], mine
        info = client.get_task(t.id)
        assert info is not None and info.attempts == 2
        assert any(h.state == "retry" and h.note == "E004: timed out after 0.3 s" for h in info.history)
    client.close()


async def test_a_sync_handler_that_returns_after_its_cancel_ends_cancelled(redis_url: str) -> None:
    registry = Registry()

    @registry.task("stubborn", queue="c")
    def stubborn(ctx: TaskContext, payload: Any) -> str:
        while not ctx.cancelled:  # notices the cancel, then returns normally anyway
            threading.Event().wait(0.01)
        return "finished anyway"

    client = Client(redis_url)
    r = client.enqueue("stubborn", None, queue="c")
    async with running_worker(registry, redis_url, ["c"], heartbeat_s=0.1):
        await wait_until(lambda: state_of(client, r.id) == TaskState.ACTIVE)
        client.cancel(r.id)
        await wait_until(lambda: (state_of(client, r.id) or TaskState.ACTIVE).is_final)
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.CANCELLED and info.result is None
    client.close()


TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


class TenantMiddleware:
    def before(self, ctx: Any) -> None:
        TENANT.set(f"acme-{ctx.attempt}")


async def test_context_variables_set_by_middleware_reach_sync_handlers(redis_url: str) -> None:
    registry = Registry()
    registry.add_middleware(TenantMiddleware())

    @registry.task("whoami", queue="cv")
    def whoami(ctx: TaskContext, payload: Any) -> str:
        return TENANT.get()

    client = Client(redis_url)
    r = client.enqueue("whoami", None, queue="cv")
    async with running_worker(registry, redis_url, ["cv"]):
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
    info = client.get_task(r.id)
    assert info is not None and info.result == "acme-1"
    client.close()


# ---------------------------------------------------------------------------------- processes


async def test_process_pool_kills_a_child_at_its_timeout_and_frees_the_slot(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)
    client = Client(redis_url)
    forever = client.enqueue("sleep_forever", None, queue="pool", timeout=1.0, max_retry=0)
    stubborn = client.enqueue("ignore_sigterm", None, queue="pool", timeout=1.0, max_retry=0)
    after = client.enqueue("pid", {"n": 1}, queue="pool")
    async with running_worker(pool_apps.pool, redis_url, ["pool"], concurrency=1, pool="process") as worker:
        await wait_until(
            lambda: all(
                state_of(client, t.id) in (TaskState.DEAD, TaskState.COMPLETED)
                for t in (forever, stubborn, after)
            ),
            timeout=60,
        )
        assert worker.overdue_slots == 0
    killed = []
    for t in (forever, stubborn):
        info = client.get_task(t.id)
        assert info is not None and info.state == TaskState.DEAD
        assert info.last_error == "E004: timed out after 1 s"
        (run,) = runs(raw, t.id)  # the handler did run, in a child process
        pid = int(run.split(":")[2])
        assert pid != os.getpid()
        killed.append(pid)
        with pytest.raises(ProcessLookupError):  # killed (SIGKILL: SIGTERM was ignored) and reaped
            os.kill(pid, 0)
    info = client.get_task(after.id)
    assert info is not None and info.state == TaskState.COMPLETED
    assert info.result["echo"] == {"n": 1} and info.result["attempt"] == 1
    assert info.result["pid"] not in (os.getpid(), *killed)
    client.close()


async def test_process_pool_refuses_a_handler_it_cannot_send_to_a_child(redis_url: str) -> None:
    registry = Registry()

    @registry.task("nested", queue="p")
    def nested(ctx: TaskContext, payload: Any) -> None:  # a local function: not importable
        return None

    worker = Worker(registry, redis_url, WorkerOptions(queues=["p"], pool="process"))
    with pytest.raises(
        InvalidConfig, match="'nested': its handler .*nested' cannot be sent to a child process"
    ):
        await worker.run()


# ---------------------------------------------------------------------------------- TimeoutError


MESSAGE = "read timed out after 5 ms talking to payments-api"


async def test_a_handlers_own_timeout_error_keeps_its_message(redis_url: str) -> None:
    registry = Registry()
    message = MESSAGE

    @registry.task("async_call", queue="to", max_retry=0)
    async def async_call(ctx: TaskContext, payload: Any) -> None:
        raise TimeoutError(message)

    @registry.task("sync_call", queue="to", max_retry=0)
    def sync_call(ctx: TaskContext, payload: Any) -> None:
        raise TimeoutError(message)

    client = Client(redis_url)
    in_loop = client.enqueue("async_call", None, queue="to", max_retry=0)
    in_thread = client.enqueue("sync_call", None, queue="to", max_retry=0)
    async with running_worker(registry, redis_url, ["to"]):
        await wait_until(lambda: all(state_of(client, t.id) == TaskState.DEAD for t in (in_loop, in_thread)))
    for t in (in_loop, in_thread):
        info = client.get_task(t.id)
        assert info is not None and info.last_error == f"TimeoutError: {message}"
        assert info.traceback is not None and "raise TimeoutError(message)" in info.traceback
        # from the handler's frame down (engine.tracebacks)
        assert "engine/worker/runners.py" not in info.traceback
    client.close()


async def test_a_timeout_error_raised_in_a_child_process_keeps_its_message(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)
    client = Client(redis_url)
    r = client.enqueue("own_timeout", None, queue="pool", max_retry=0)
    async with running_worker(pool_apps.pool, redis_url, ["pool"], concurrency=1, pool="process"):
        await wait_until(lambda: state_of(client, r.id) == TaskState.DEAD, timeout=60)
    info = client.get_task(r.id)
    assert info is not None and info.last_error == f"TimeoutError: {MESSAGE}"
    # the child's traceback, naming the handler's line
    assert info.traceback is not None and 'raise TimeoutError("read timed out' in info.traceback
    assert "engine/worker/runners.py" not in info.traceback  # the child's frames around the handler are cut
    client.close()


# ---------------------------------------------------------------------------------- background loops


async def test_maintenance_survives_an_exception_logs_and_counts_it(
    redis_url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()

    @registry.task("noop", queue="m")
    async def noop(ctx: TaskContext, payload: Any) -> None:
        return None

    ks = Settings().keyspace
    # a dependency outbox of the wrong type: the maintenance step that flushes it raises
    # (WRONGTYPE, not a RediqError); the steps after it and later passes go on
    raw.set(ks.queue("m").dep_outbox, "not a sorted set")
    async with running_worker(registry, redis_url, ["m"], maintenance_s=0.1) as worker:
        await wait_until(lambda: bool(raw.sismember(ks.queues, "m")))  # the first pass's first step
        raw.delete(ks.queues)
        await wait_until(lambda: bool(raw.sismember(ks.queues, "m")))
        await wait_until(lambda: worker.loop_errors["maintenance"] >= 3)
        metrics = WorkerMetrics(
            LabelPolicy(["noop"], ["m"]),
            lambda: [],
            worker_state=WorkerStateCollector(lambda: worker.overdue_slots, lambda: worker.loop_errors),
        )
        text = metrics.exposition().decode()
    assert 'rediq_worker_loop_errors_total{loop="maintenance"}' in text
    assert "rediq_worker_overdue_slots 0.0" in text
    failures = [r for r in caplog.records if "maintenance (outbox of m) failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None  # logged with its traceback
    raw.delete(ks.queue("m").dep_outbox)


# ---------------------------------------------------------------------------------- unknown types


async def test_a_task_type_unknown_to_its_worker_waits_uncharged_for_one_that_knows_it(
    redis_url: str,
) -> None:
    old = Registry()

    @old.task("pay", queue="roll")
    async def pay(ctx: TaskContext, payload: Any) -> None:
        return None

    new = Registry()
    attempts: list[int] = []

    @new.task("refund", queue="roll")
    async def refund(ctx: TaskContext, payload: Any) -> str:
        attempts.append(ctx.attempt)
        return "refunded"

    client = Client(redis_url)
    r = client.enqueue("refund", None, queue="roll", max_retry=0)
    async with running_worker(old, redis_url, ["roll"], poll_interval_s=0.05):  # due again 5 s later
        await wait_until(
            lambda: any("unknown task type 'refund'" in h.note for h in client.get_task(r.id).history)  # type: ignore[union-attr]
        )
        info = client.get_task(r.id)
        assert info is not None and info.attempts == 0 and not info.state.is_final
    async with running_worker(new, redis_url, ["roll"], poll_interval_s=0.05):
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
    assert attempts == [1]
    client.close()


async def test_a_task_type_no_worker_knows_goes_dead_after_the_limit(redis_url: str) -> None:
    registry = Registry()

    @registry.task("pay", queue="roll")
    async def pay(ctx: TaskContext, payload: Any) -> None:
        return None

    client = Client(redis_url)
    r = client.enqueue("refund", None, queue="roll")
    async with running_worker(
        registry,
        redis_url,
        ["roll"],
        unknown_type_delay_s=0.1,
        unknown_type_timeout_s=0.5,
        poll_interval_s=0.05,
    ):
        await wait_until(lambda: state_of(client, r.id) == TaskState.DEAD)
    info = client.get_task(r.id)
    assert info is not None and info.attempts == 0
    assert info.last_error is not None
    assert info.last_error.startswith(
        "unknown task type 'refund': no worker with a handler for it took it within 0.5 s"
    )
    assert sum(1 for h in info.history if h.state == "scheduled") >= 2  # it went back, more than once
    client.close()


def test_worker_options_and_settings_are_validated() -> None:
    with pytest.raises(InvalidConfig, match="pool must be 'thread' or 'process'"):
        Worker(Registry(), "redis://localhost:1", WorkerOptions(queues=["q"], pool="fork"))  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="unknown_type_timeout_s must be"):
        Worker(
            Registry(),
            "redis://localhost:1",
            WorkerOptions(queues=["q"], unknown_type_timeout_s=float("nan")),
        )
    with pytest.raises(InvalidConfig, match="worker_unknown_type_timeout_s"):
        load_config(worker_unknown_type_timeout_s=-1)
    with pytest.raises(InvalidConfig, match="worker_pool"):
        load_config(worker_pool="fork")
    assert load_config(worker_pool="process").worker_pool == "process"


# ---------------------------------------------------------------------------------- signals


def test_a_second_sigterm_ends_the_grace_period(redis_url: str, raw: redis.Redis, tmp_path: Path) -> None:
    client = Client(redis_url)
    r = client.enqueue("slow", {"seconds": 300}, queue="crash")
    log_path = tmp_path / "worker.log"
    env_url = os.environ.get("REDIQ_TEST_URL")
    os.environ["REDIQ_TEST_URL"] = redis_url
    try:
        proc = spawn_worker(redis_url, "tests.engine.apps:crash", "crash", "30", "120", log_path=log_path)
    finally:
        if env_url is None:
            del os.environ["REDIQ_TEST_URL"]
        else:
            os.environ["REDIQ_TEST_URL"] = env_url
    try:
        wait_until_sync(lambda: len(runs(raw, r.id)) == 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        wait_until_sync(lambda: "draining" in log_path.read_text(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # not after the 120 s grace period
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.PENDING and info.attempts == 0
    assert "returned by worker shutdown" in info.history[0].note
    client.close()


async def test_the_heartbeat_survives_an_error_and_keeps_extending_leases(
    redis_url: str, raw: redis.Redis
) -> None:
    registry = Registry()
    release = asyncio.Event()
    long_runs: list[int] = []

    @registry.task("quick", queue="hb")
    async def quick(ctx: TaskContext, payload: Any) -> None:
        return None

    @registry.task("long", queue="hb")
    async def long(ctx: TaskContext, payload: Any) -> str:
        long_runs.append(ctx.attempt)
        await release.wait()
        return "done"

    qk = Settings().keyspace.queue("hb")
    raw.set(qk.runtimes("quick"), "not a list")  # the heartbeat's run-time push fails (WRONGTYPE)
    client = Client(redis_url)
    async with running_worker(
        registry, redis_url, ["hb"], lease_s=1.0, heartbeat_s=0.2, poll_interval_s=0.05
    ) as worker:
        q = client.enqueue("quick", None, queue="hb")
        await wait_until(lambda: state_of(client, q.id) == TaskState.COMPLETED)
        r = client.enqueue("long", None, queue="hb")
        try:
            await wait_until(lambda: long_runs == [1])
            first_lease = int(raw.hget(qk.task(r.id), "lease") or 0)
            # leases are still extended after the failed heartbeat
            await wait_until(lambda: int(raw.hget(qk.task(r.id), "lease") or 0) > first_lease + 2500)
            # ...by this worker's heartbeat for this run: not lapsed, recovered and run again
            assert long_runs == [1]
            info = client.get_task(r.id)
            assert info is not None and info.attempts == 1
            assert worker.loop_errors["heartbeat"] >= 1
        finally:
            release.set()
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
    assert long_runs == [1]
    raw.delete(qk.runtimes("quick"))
    client.close()


async def test_the_hand_off_inbox_loop_survives_a_malformed_record(redis_url: str, raw: redis.Redis) -> None:
    registry = Registry()

    @registry.task("quick", queue="ib")
    async def quick(ctx: TaskContext, payload: Any) -> str:
        return "ok"

    qk = Settings().keyspace.queue("ib")
    client = Client(redis_url)
    async with running_worker(registry, redis_url, ["ib"], poll_interval_s=0.05) as worker:
        inbox, taken = qk.inbox(worker.id), qk.taken(worker.id)
        await wait_until(lambda: "ib" in worker.core.takes.in_flight)
        raw.rpush(inbox, "{not json")  # moved by the waiting take: take.lua drops it
        await wait_until(lambda: raw.llen(inbox) == 0 and raw.llen(taken) == 0)
        await wait_until(lambda: bool(raw.hexists(qk.idle, worker.id)))  # registered for hand-offs
        r = client.enqueue("quick", None, queue="ib")  # handed to this worker's inbox
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
        assert worker.loop_errors["inbox-ib"] == 0
        worker.core.disable_take()  # popped plainly from here on (an ACL without BLMOVE)
        await wait_until(lambda: not worker.core.takes.in_flight)
        raw.rpush(inbox, "{not json")  # popped: parsing it fails, the loop goes on
        await wait_until(lambda: raw.llen(inbox) == 0)
        await wait_until(lambda: bool(raw.hexists(qk.idle, worker.id)))
        r = client.enqueue("quick", None, queue="ib")
        await wait_until(lambda: state_of(client, r.id) == TaskState.COMPLETED)
        assert worker.loop_errors["inbox-ib"] == 1
    client.close()


async def test_a_cancel_kills_the_child_running_the_task(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)
    client = Client(redis_url)
    r = client.enqueue("sleep_forever", None, queue="pool", timeout=600)
    async with running_worker(
        pool_apps.pool, redis_url, ["pool"], concurrency=1, pool="process", heartbeat_s=0.1
    ):
        await wait_until(lambda: len(runs(raw, r.id)) == 1, timeout=60)
        client.cancel(r.id)
        await wait_until(lambda: state_of(client, r.id) == TaskState.CANCELLED, timeout=30)
    pid = int(runs(raw, r.id)[0].split(":")[2])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    client.close()
