"""A concurrency group across a worker crash, with real processes: a SIGKILLed worker's slot in
its group stays taken while its lease holds (the limit holds), and returns when the lease lapses,
with no recovery step needed for the count."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.task import TaskState
from tests.engine.conftest import spawn_worker, stop_process, wait_until_sync
from tests.engine.test_crash import APP, runs


@pytest.fixture(autouse=True)
def _test_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)


def test_a_dead_workers_group_slot_returns_when_its_lease_lapses(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    raw.hset("rediq:{crash}:cglimits", "*", 1)
    client = Client(redis_url)
    a = client.enqueue("slow", {"seconds": 30}, queue="crash", group="customer:42")
    b = client.enqueue("slow", {"seconds": 0.1}, queue="crash", group="customer:42")
    first = spawn_worker(redis_url, APP, "crash", "1.5", log_path=tmp_path / "w1.log")
    try:
        wait_until_sync(lambda: any(x.startswith("start:1") for x in runs(raw, a.id)), timeout=20)
        # the worker has 3 free slots and keeps asking, but b's group is full
        wait_until_sync(lambda: int(raw.hget(f"rediq:worker:{_only_worker(raw)}", "heartbeat") or 0) > 0)
        assert raw.zrange("rediq:{crash}:cg:customer:42", 0, -1) == [a.id]
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        lease = int(raw.hget(f"rediq:{{crash}}:t:{a.id}", "lease") or 0)
        raw.hset(f"rediq:{{crash}}:t:{a.id}", "payload", '{"seconds": 0.1}')  # the rerun is quick
        second = spawn_worker(redis_url, APP, "crash", "1.5", log_path=tmp_path / "w2.log")
        try:
            wait_until_sync(
                lambda: all(
                    (t := client.get_task(i)) is not None and t.state == TaskState.COMPLETED
                    for i in (a.id, b.id)
                ),
                30,
            )
        finally:
            stop_process(second)
    finally:
        stop_process(first, signal.SIGKILL)
    info_b = client.get_task(b.id)
    assert info_b is not None and info_b.attempts == 1 and info_b.started_at_ms is not None
    assert info_b.started_at_ms >= lease  # b waited for the dead worker's lease to lapse
    assert runs(raw, b.id) and runs(raw, b.id)[0].startswith("start:1")
    assert raw.exists("rediq:{crash}:cg:customer:42") == 0


def _only_worker(raw: redis.Redis) -> str:
    (worker,) = raw.zrange("rediq:workers", 0, -1)
    return str(worker.decode() if isinstance(worker, bytes) else worker)
