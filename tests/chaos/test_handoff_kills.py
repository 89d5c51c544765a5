"""Hand-off under worker kills: tasks arrive at a steady rate, so idle workers are registered
for hand-off when they are SIGKILLed; what enqueue handed to a dead worker must still complete
(after its lease runs out, uncharged), nothing lost, every duplicate explained by a kill."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import redis

from engine.client import Client
from tests.chaos.conftest import PoolFactory, ServerFactory
from tests.chaos.harness import (
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


def test_sigkill_idle_workers_while_tasks_arrive(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    n = max(scaled(6_000), 2_000)  # 10 s at least: four kills
    rate = 200.0  # tasks/s: far below capacity, so workers sit idle and registered
    server = server_factory()
    client = Client(server.url)
    r = redis.Redis(port=server.port, decode_responses=True)
    pool = pool_factory(server.url, "chaos", lease_s=2.0).start(3)
    time.sleep(2.0)  # let them register
    rng = random.Random(11)
    ids: list[str] = []
    kills, handed = 0, 0
    began = time.monotonic()
    next_kill = began + 2.0
    for i in range(n):
        ahead = began + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        result = client.enqueue("work", {"sleep": 0.002}, queue="chaos", max_retry=20)
        ids.append(result.id)
        handed += result.state == "active"
        if time.monotonic() >= next_kill:
            pool.kill(rng.choice(pool.alive))
            kills += 1
            pool.spawn()
            next_kill += 2.0
    done = wait_for(lambda: r.zcard("rediq:{chaos}:completed") >= n, timeout=max(60, 60 * scale()))
    pool.stop_all()
    states = task_states(r, "chaos", ids)
    runs = read_ledger(ledger)
    fig = completion_figure(
        "hand-off, idle worker SIGKILL every 2s",
        ids,
        states,
        runs,
        extra=f"{kills} killed, {handed} handed off",
    )
    fig.report()
    assert done, f"only {r.zcard('rediq:{chaos}:completed')} of {n} completed"
    assert handed > n // 2  # the path under test was the one taken
    assert kills >= 3
    assert fig.lost == 0
    assert unexplained_duplicates(runs, pool.killed) == []
    assert check_invariants(r) == []
    r.close()
    client.close()
