"""Handlers that hang, kill their own process, or raise on every attempt: each task ends dead
after exactly ``max_retry + 1`` deliveries, and failed attempts are spaced by the backoff
(no retry storm)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.task import TaskState
from tests.chaos.conftest import PoolFactory, ServerFactory
from tests.chaos.harness import Figure, Run, read_ledger, starts_by_task, wait_for
from tests.engine.invariants import check_invariants

pytestmark = pytest.mark.chaos

N = 5


def retry_storm(runs: list[Run], min_gap_s: float) -> list[str]:
    """Tasks whose consecutive attempts started closer together than the backoff allows."""
    bad = []
    for task_id, starts in starts_by_task(runs).items():
        gaps = [b.at - a.at for a, b in zip(starts, starts[1:], strict=False)]
        if any(g < min_gap_s for g in gaps):
            bad.append(task_id)
    return bad


def _all_dead(client: Client, queue: str, ids: list[str]) -> bool:
    return all((t := client.get_task(i, queue)) is not None and t.state == TaskState.DEAD for i in ids)


def _figure(
    name: str, client: Client, queue: str, ids: list[str], runs: list[Run], max_retry: int, extra: str
) -> Figure:
    """'lost': a task that did not reach its final state (dead); 'duplicates': deliveries beyond
    ``max_retry + 1`` (a retry storm or a poison task that keeps coming back)."""
    infos = [client.get_task(i, queue) for i in ids]
    delays = [
        ((t.finished_at_ms or 0) - t.enqueued_at_ms) / 1000
        for t in infos
        if t is not None and t.finished_at_ms
    ]
    dead = sum(1 for t in infos if t is not None and t.state == TaskState.DEAD)
    starts = starts_by_task(runs)
    return Figure(
        name,
        len(ids),
        0,
        len(ids) - dead,
        sum(max(0, len(starts.get(i, [])) - (max_retry + 1)) for i in ids),
        max(delays, default=0.0),
        f"{sum(len(starts.get(i, [])) for i in ids)} handler starts; " + extra,
    )


def test_hanging_handler_times_out_and_goes_dead(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    server = server_factory()
    client = Client(server.url)
    ids = [client.enqueue("hang", None, queue="bad-hang", max_retry=1, timeout=0.5).id for _ in range(N)]
    pool = pool_factory(server.url, "bad-hang", lease_s=2.0).start(1)
    assert wait_for(lambda: _all_dead(client, "bad-hang", ids), timeout=30)
    pool.stop_all()
    runs = read_ledger(ledger)
    starts = starts_by_task(runs)
    fig = _figure("handler hangs (timeout 0.5s, max_retry 1)", client, "bad-hang", ids, runs, 1, "all dead")
    fig.report()
    for i in ids:
        info = client.get_task(i, "bad-hang")
        assert info is not None and info.attempts == 2 and len(starts[i]) == 2
        assert info.last_error is not None and info.last_error.startswith("E004: timed out")
    assert all(p.poll() is not None for p in pool.procs)
    assert check_invariants(redis.Redis(port=server.port, decode_responses=True)) == []


def test_handler_that_kills_its_process_is_poison_dead_after_max_retry_plus_one(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    server = server_factory()
    client = Client(server.url)
    ids = [client.enqueue("exit", None, queue="bad-exit", max_retry=2).id for _ in range(N)]
    pool = pool_factory(server.url, "bad-exit", lease_s=1.0, concurrency=1)
    pool.spawn()
    deadline = time.monotonic() + 90
    while not _all_dead(client, "bad-exit", ids) and time.monotonic() < deadline:
        if not pool.alive:  # a supervisor (systemd, k8s) restarts the crashed worker
            pool.spawn()
        time.sleep(0.2)
    pool.stop_all()
    runs = read_ledger(ledger)
    starts = starts_by_task(runs)
    deaths = sum(1 for p in pool.procs if p.returncode == 13)
    fig = _figure(
        "handler os._exit (max_retry 2)",
        client,
        "bad-exit",
        ids,
        runs,
        2,
        f"{deaths} worker processes killed by the poison tasks, {pool.spawned} started",
    )
    fig.report()
    assert _all_dead(client, "bad-exit", ids)
    for i in ids:
        info = client.get_task(i, "bad-exit")
        assert info is not None and info.attempts == 3  # every delivery counts as an attempt
        # attempts are charged when a task starts, not when it is prefetched: exactly 3 runs
        assert len(starts.get(i, [])) == 3
        assert info.last_error is not None and info.last_error.startswith("worker died during attempt 3")
    # the poison stops: no more crashes than deliveries
    assert deaths == sum(len(s) for s in starts.values())
    assert fig.duplicates == 0
    assert check_invariants(redis.Redis(port=server.port, decode_responses=True)) == []


def test_always_raising_handler_goes_dead_without_a_retry_storm(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    server = server_factory()
    client = Client(server.url)
    ids = [client.enqueue("raise", None, queue="bad-raise", max_retry=3).id for _ in range(N)]
    pool = pool_factory(server.url, "bad-raise", lease_s=2.0).start(2)
    assert wait_for(lambda: _all_dead(client, "bad-raise", ids), timeout=30)
    time.sleep(1.0)  # nothing may run after death
    pool.stop_all()
    runs = read_ledger(ledger)
    starts = starts_by_task(runs)
    fig = _figure(
        "handler raises every time (max_retry 3, Fixed 0.3s)", client, "bad-raise", ids, runs, 3, "all dead"
    )
    fig.report()
    for i in ids:
        info = client.get_task(i, "bad-raise")
        assert info is not None and info.attempts == 4 and len(starts[i]) == 4
        assert info.last_error == "RuntimeError: this handler always fails"
    assert retry_storm(runs, min_gap_s=0.3 * 0.9 - 0.02) == []
    assert check_invariants(redis.Redis(port=server.port, decode_responses=True)) == []
    # control: the storm detector flags attempts that came back too fast
    first = starts[ids[0]][0]
    storm = [*runs, Run("start", first.task_id, 9, first.pid, first.at + 0.01)]
    assert retry_storm(storm, min_gap_s=0.25) == [ids[0]]


def test_bystander_prefetched_next_to_a_poison_task_still_runs(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    server = server_factory()
    client = Client(server.url)
    poison = client.enqueue("exit", None, queue="bystander", max_retry=0, priority=0).id
    innocent = client.enqueue("work", None, queue="bystander", max_retry=0, priority=10).id
    pool = pool_factory(server.url, "bystander", lease_s=1.0, concurrency=1)
    pool.spawn()

    def settled() -> bool:
        a, b = client.get_task(poison, "bystander"), client.get_task(innocent, "bystander")
        return a is not None and b is not None and a.state.is_final and b.state.is_final

    deadline = time.monotonic() + 30
    while not settled() and time.monotonic() < deadline:
        if not pool.alive:
            pool.spawn()
        time.sleep(0.2)
    pool.stop_all()
    info = client.get_task(innocent, "bystander")
    assert info is not None
    assert info.state == TaskState.COMPLETED, f"innocent task ended {info.state}: {info.last_error}"
