"""Redis SIGKILLed and restarted twice while producers enqueue and workers drain.

With ``appendfsync always`` every acknowledged enqueue survives; with ``everysec`` the cost
of the last second of writes is measured (a process SIGKILL leaves the written AOF in the
page cache, so the window only opens on an OS crash or power loss); with persistence off
(the control) the checker must see the loss."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.errors import ConnectionFailed
from tests.chaos.conftest import PoolFactory, ServerFactory
from tests.chaos.harness import Figure, completion_figure, read_ledger, scaled, task_states, wait_for
from tests.engine.invariants import check_invariants

pytestmark = pytest.mark.chaos

RUN_S = 16.0
KILLS_AT = (5.0, 11.0)
DOWN_S = 1.0


@dataclass
class Producer:
    """Enqueues with client-chosen ids; a call that fails is retried with the same id until
    Redis acknowledges it (the documented way to enqueue exactly once)."""

    client: Client
    limit: int
    acked: list[str] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        began = time.monotonic()
        rate = self.limit / (RUN_S * 0.9)  # spread over the whole run, through both crashes
        while not self.stop.is_set() and len(self.acked) < self.limit:
            ahead = began + len(self.acked) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            task_id = uuid.uuid4().hex
            while not self.stop.is_set():
                try:
                    self.client.enqueue("work", None, queue="chaos", id=task_id, max_retry=20)
                except ConnectionFailed:
                    self.failures += 1
                    time.sleep(0.05)
                    continue
                self.acked.append(task_id)
                self.ack_times.append(time.monotonic())
                break


def crash_run(
    name: str, args: list[str], server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> tuple[Figure, list[str], redis.Redis, int]:
    server = server_factory(args)
    r = redis.Redis(port=server.port, decode_responses=True)
    pool = pool_factory(server.url, "chaos", lease_s=3.0).start(2)
    producer = Producer(Client(server.url), scaled(50_000))
    thread = threading.Thread(target=producer.run, daemon=True)
    began = time.monotonic()
    thread.start()
    in_window = 0
    for at in KILLS_AT:
        time.sleep(max(0.0, began + at - time.monotonic()))
        server.kill()
        killed_at = time.monotonic()
        in_window += sum(1 for t in producer.ack_times if killed_at - 1.0 <= t <= killed_at)
        time.sleep(DOWN_S)
        server.start()
    time.sleep(max(0.0, began + RUN_S - time.monotonic()))
    producer.stop.set()
    thread.join(30)
    acked = list(producer.acked)

    def drained() -> bool:
        return r.zcard("rediq:{chaos}:pending") + r.zcard("rediq:{chaos}:active") == 0

    wait_for(drained, timeout=60)
    time.sleep(0.5)
    pool.stop_all()
    states = task_states(r, "chaos", acked)
    runs = read_ledger(ledger)
    missing = sum(1 for t in acked if t not in states)
    fig = completion_figure(
        name,
        acked,
        states,
        runs,
        extra=f"{missing} acknowledged enqueues gone from Redis; {in_window} acks in the last second "
        f"before the kills; {producer.failures} enqueue calls failed and were retried",
    )
    fig.report()
    producer.client.close()
    return fig, acked, r, in_window


def test_redis_killed_twice_with_appendfsync_always(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    args = ["--appendonly", "yes", "--appendfsync", "always"]
    fig, acked, r, _ = crash_run("Redis SIGKILL x2, AOF always", args, server_factory, pool_factory, ledger)
    assert len(acked) > 100
    assert fig.lost == 0
    assert check_invariants(r) == []


def test_redis_killed_twice_with_appendfsync_everysec(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    args = ["--appendonly", "yes", "--appendfsync", "everysec"]
    fig, acked, r, in_window = crash_run(
        "Redis SIGKILL x2, AOF everysec", args, server_factory, pool_factory, ledger
    )
    assert len(acked) > 100
    # the documented window: at most the last second of acknowledged writes per crash
    assert fig.lost <= in_window
    assert check_invariants(r) == []


def test_control_redis_killed_without_persistence_loses_tasks(
    server_factory: ServerFactory, pool_factory: PoolFactory, ledger: Path
) -> None:
    fig, acked, r, _ = crash_run("control: persistence off", [], server_factory, pool_factory, ledger)
    assert len(acked) > 100
    assert fig.lost > 0, "the checker must see the loss that a server without persistence causes"
