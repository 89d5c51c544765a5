"""Workers SIGKILLed every 2 s and restarted while they drain a large backlog: nothing is
lost, and every duplicate execution is explained by a worker that died mid-task."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.task import Task
from tests.chaos.conftest import PoolFactory, ServerFactory
from tests.chaos.harness import (
    Run,
    completion_figure,
    read_ledger,
    scale,
    scaled,
    task_states,
    unexplained_duplicates,
    wait_for,
)
from tests.engine.invariants import check_invariants

pytestmark = pytest.mark.chaos


def _enqueue(client: Client, n: int, sleep: float) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 1000):
        batch = [
            Task(type="work", queue="chaos", payload={"sleep": sleep}, max_retry=20)
            for _ in range(min(1000, n - start))
        ]
        results = client.enqueue_many(batch)
        assert all(r.created for r in results)
        ids.extend(r.id for r in results)
    return ids


def test_sigkill_a_worker_every_2s(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    n = scaled(50_000)
    server = server_factory()
    client = Client(server.url)
    ids = _enqueue(client, n, sleep=0.05)
    r = redis.Redis(port=server.port, decode_responses=True)
    pool = pool_factory(server.url, "chaos", lease_s=2.0).start(4)
    rng = random.Random(9)
    kills = 0
    deadline = time.monotonic() + max(170, 400 * scale())  # 50,000 x 50 ms on 16 slots: ~160 s of work
    while time.monotonic() < deadline and r.zcard("rediq:{chaos}:completed") < n:
        time.sleep(2.0)
        victim = rng.choice(pool.alive)
        pool.kill(victim)
        kills += 1
        pool.spawn()
    done = wait_for(lambda: r.zcard("rediq:{chaos}:completed") >= n, timeout=30)
    pool.stop_all()
    states = task_states(r, "chaos", ids)
    runs = read_ledger(ledger)
    fig = completion_figure("worker SIGKILL every 2s", ids, states, runs, extra=f"{kills} workers killed")
    fig.report()
    assert done, f"only {r.zcard('rediq:{chaos}:completed')} of {n} completed"
    assert kills >= 3
    assert fig.lost == 0
    assert unexplained_duplicates(runs, pool.killed) == []
    assert check_invariants(r) == []

    # control: the same checkers see loss and unexplained duplicates when they are there
    victims = ids[:5]
    r.delete(*[f"rediq:{{chaos}}:t:{t}" for t in victims])
    r.zrem("rediq:{chaos}:completed", *victims)
    control = completion_figure("control: 5 hashes deleted", ids, task_states(r, "chaos", ids), runs)
    assert control.lost == 5
    fake = [*runs, Run("start", ids[10], 1, 999_999, 0.0)]
    assert unexplained_duplicates(fake, pool.killed) == [ids[10]]
    r.hset(f"rediq:{{chaos}}:t:{ids[11]}", "state", "pending")
    assert any(ids[11] in p for p in check_invariants(r))
    r.close()
    client.close()
