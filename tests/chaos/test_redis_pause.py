"""Redis frozen with SIGSTOP for 10 s, then resumed: workers neither crash nor spin, and the
backlog completes afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from engine.client import Client
from engine.task import Task
from tests.chaos.conftest import PoolFactory, ServerFactory
from tests.chaos.harness import completion_figure, lease_expiries, read_ledger, scaled, task_states, wait_for
from tests.engine.invariants import check_invariants

pytestmark = pytest.mark.chaos

PAUSE_S = 10.0
SPIN_LIMIT = 0.10
"""A worker may use at most this fraction of one core while Redis is frozen."""


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        out[pid] = t.user + t.system
    return out


def cpu_share_over(pids: list[int], seconds: float) -> dict[int, float]:
    before = cpu_seconds(pids)
    time.sleep(seconds)
    after = cpu_seconds(pids)
    return {pid: (after[pid] - before[pid]) / seconds for pid in pids}


def test_redis_sigstop_10s(server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path) -> None:
    n = scaled(20_000)
    server = server_factory()
    client = Client(server.url)
    ids = [
        r.id
        for r in client.enqueue_many(
            [Task(type="work", queue="chaos", payload={"sleep": 0.01}) for _ in range(n)]
        )
    ]
    r = redis.Redis(port=server.port, decode_responses=True)
    pool = pool_factory(server.url, "chaos", lease_s=30.0).start(2)
    wait_for(lambda: r.zcard("rediq:{chaos}:completed") > n // 10, timeout=60)
    pids = [p.pid for p in pool.procs]
    server.signal(signal.SIGSTOP)
    try:
        time.sleep(1.0)  # in-flight round trips settle into waiting
        shares = cpu_share_over(pids, PAUSE_S - 1.0)
    finally:
        server.signal(signal.SIGCONT)
    alive_after_pause = [p.poll() is None for p in pool.procs]
    done = wait_for(lambda: r.zcard("rediq:{chaos}:completed") >= n, timeout=120)
    alive_at_end = [p.poll() is None for p in pool.procs]
    codes = pool.stop_all()
    states = task_states(r, "chaos", ids)
    runs = read_ledger(ledger)
    worst = max(shares.values())
    fig = completion_figure(
        "Redis SIGSTOP 10s",
        ids,
        states,
        runs,
        extra=f"worker CPU during the pause: {', '.join(f'{s:.1%}' for s in shares.values())} of a core",
    )
    fig.report()
    assert all(alive_after_pause) and all(alive_at_end), pool.logs()[-3000:]
    assert codes == [0] * len(codes), "workers must drain and exit cleanly after the pause"
    assert done and fig.lost == 0
    assert worst < SPIN_LIMIT, f"a worker spun while Redis was frozen: {shares}"
    assert fig.duplicates == 0  # leases (30 s) outlive the pause, so nobody re-runs a task
    # a dequeue re-sent after its socket timeout returns what its first copy leased when Redis
    # resumed (dequeue receipts), so no task waits out a lease held by nobody
    expired = lease_expiries(r, "chaos", ids)
    assert expired == [], (
        pool.logs()[-2000:],
        [r.lrange(f"rediq:{{chaos}}:h:{t}", 0, -1) for t in expired[:3]],
    )
    assert check_invariants(r) == []
    client.close()


def test_control_spin_detector_sees_a_busy_loop() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nend=time.time()+4\nwhile time.time()<end: pass"]
    )
    try:
        time.sleep(0.3)
        shares = cpu_share_over([proc.pid], 2.0)
    finally:
        proc.kill()
        proc.wait()
    assert shares[proc.pid] > SPIN_LIMIT
