"""A worker whose clock is 30 s ahead (``faketime -f +30s``) works beside a correct one and
never steals a live lease: leases are stamped and checked with Redis ``TIME`` only."""

from __future__ import annotations

import glob
import time
from pathlib import Path

import pytest
import redis

from engine.client import Client
from tests.chaos.conftest import PoolFactory, ServerFactory
from tests.chaos.harness import (
    completion_figure,
    read_ledger,
    scaled,
    task_states,
    unexplained_duplicates,
    wait_for,
)
from tests.engine.invariants import check_invariants

pytestmark = pytest.mark.chaos

LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), "")
# libfaketime preloaded directly (not the ``faketime`` wrapper, which forks) so that the pid we
# spawn is the worker's pid that the ledger records
# (FAKETIME_DONT_FAKE_MONOTONIC=1 makes libfaketime fail clock_nanosleep with EINVAL: keep the
# default, which shifts the monotonic clock by the same constant and so leaves durations alone)
SKEW_ENV = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+30s"}


def len_hint() -> float:
    return scaled(200, minimum=16) * 1.5 / 8


def _run(
    server_factory: ServerFactory,
    pool_factory: PoolFactory,
    ledger: Path,
    honest_heartbeat_s: float,
    wait_s: float,
) -> tuple[list[str], redis.Redis, dict[int, str], float]:
    if not LIBFAKETIME:
        pytest.fail("faketime is not installed: apt-get install -y faketime")
    server = server_factory()
    client = Client(server.url)
    n = scaled(200, minimum=16)
    ids = [client.enqueue("work", {"sleep": 1.5}, queue="chaos").id for _ in range(n)]
    r = redis.Redis(port=server.port, decode_responses=True)
    honest = pool_factory(server.url, "chaos", lease_s=1.0, heartbeat_s=honest_heartbeat_s).start(1)
    assert wait_for(lambda: r.zcard("rediq:{chaos}:active") > 0, timeout=20)
    spawned_at = time.time()
    skewed = pool_factory(server.url, "chaos", lease_s=1.0, env=SKEW_ENV).start(1)
    wait_for(lambda: r.zcard("rediq:{chaos}:completed") >= n, timeout=wait_s)
    honest.stop_all()
    skewed.stop_all()
    client.close()
    who = {p.pid: "honest" for p in honest.procs} | {p.pid: "skewed" for p in skewed.procs}
    return ids, r, who, spawned_at


def test_skewed_worker_does_not_steal_live_leases(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    ids, r, who, spawned_at = _run(
        server_factory, pool_factory, ledger, honest_heartbeat_s=1.0 / 3, wait_s=60 + len_hint()
    )
    runs = read_ledger(ledger)
    by_side: dict[str, list[float]] = {"honest": [], "skewed": []}
    for run in runs:
        if run.event == "start":
            by_side[who[run.pid]].append(run.at)
    fig = completion_figure(
        "worker clock +30s beside a correct one",
        ids,
        task_states(r, "chaos", ids),
        runs,
        extra=f"honest ran {len(by_side['honest'])}, skewed ran {len(by_side['skewed'])}",
    )
    fig.report()
    assert by_side["honest"] and by_side["skewed"], "both workers must have taken work"
    # the skewed worker really lives 30 s ahead
    assert min(by_side["skewed"]) - spawned_at > 25
    assert fig.lost == 0 and fig.duplicates == 0
    assert unexplained_duplicates(runs, killed_pids=set()) == []
    assert check_invariants(r) == []


def test_control_a_worker_that_stops_heartbeating_has_its_leases_taken(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    """Heartbeat (10 s) slower than the lease (1 s): the leases really expire mid-task, and the
    same checks must see the resulting duplicate executions."""
    # recovered tasks rejoin the back of the queue: give the backlog time to reach them
    ids, r, _, _ = _run(
        server_factory, pool_factory, ledger, honest_heartbeat_s=10.0, wait_s=8.0 + len_hint()
    )
    runs = read_ledger(ledger)
    fig = completion_figure("control: lease lapses mid-task", ids, task_states(r, "chaos", ids), runs)
    fig.report()
    assert fig.duplicates > 0
    assert unexplained_duplicates(runs, killed_pids=set()) != []
