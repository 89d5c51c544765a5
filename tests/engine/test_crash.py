"""Crash recovery with real processes: SIGKILLed workers, poison tasks, a stalled server."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.connection import parse_url
from engine.task import TaskState
from tests.engine.conftest import spawn_worker, stop_process, wait_until_sync
from tests.servers import ServerProcess, free_port

APP = "tests.engine.apps:crash"


@pytest.fixture(autouse=True)
def _test_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_TEST_URL", redis_url)


def runs(raw: redis.Redis, task_id: str) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else x for x in raw.lrange(f"test:runs:{task_id}", 0, -1)]


def test_sigkilled_worker_task_runs_again_after_lease_expiry(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    client = Client(redis_url)
    r = client.enqueue("slow", {"seconds": 30}, queue="crash")
    first = spawn_worker(redis_url, APP, "crash", "1.5", log_path=tmp_path / "w1.log")
    try:
        wait_until_sync(lambda: any(x.startswith("start:1") for x in runs(raw, r.id)), timeout=20)
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        info = client.get_task(r.id)
        assert info is not None and info.state == TaskState.ACTIVE  # the lease still holds it
        raw.hset(f"rediq:{{crash}}:t:{r.id}", "payload", '{"seconds": 0.1}')  # the rerun is quick
        second = spawn_worker(redis_url, APP, "crash", "1.5", log_path=tmp_path / "w2.log")
        try:
            wait_until_sync(
                lambda: (t := client.get_task(r.id)) is not None and t.state == TaskState.COMPLETED, 30
            )
        finally:
            stop_process(second)
    finally:
        stop_process(first, signal.SIGKILL)
    info = client.get_task(r.id)
    assert info is not None and info.attempts == 2
    assert any("worker died during attempt 1" in h.note for h in info.history)
    assert [x.split(":")[0] for x in runs(raw, r.id)] == ["start", "start", "end"]


def test_poison_task_that_kills_its_worker_goes_dead_after_max_retry_plus_one(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    client = Client(redis_url)
    r = client.enqueue("exit", None, queue="crash", max_retry=1)
    spawned = 0
    while spawned < 6:
        info = client.get_task(r.id)
        if info is not None and info.state == TaskState.DEAD:
            break
        proc = spawn_worker(redis_url, APP, "crash", "0.6", log_path=tmp_path / f"w{spawned}.log")
        spawned += 1
        try:
            proc.wait(8)  # the handler kills the process; or the worker idles until we stop it
        except Exception:  # noqa: BLE001 - still running: it found nothing to do
            pass
        stop_process(proc, signal.SIGKILL)
        time.sleep(0.7)  # let the lease run out
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.DEAD
    assert info.last_error is not None and info.last_error.startswith("worker died during attempt 2")
    assert len(runs(raw, r.id)) == 2  # exactly max_retry + 1 deliveries, then no more crashes


def test_subprocess_worker_drains_on_sigterm(redis_url: str, raw: redis.Redis, tmp_path: Path) -> None:
    client = Client(redis_url)
    r = client.enqueue("slow", {"seconds": 0.8}, queue="crash")
    proc = spawn_worker(redis_url, APP, "crash", "30", "10", log_path=tmp_path / "w.log")
    wait_until_sync(lambda: len(runs(raw, r.id)) == 1, timeout=20)
    assert stop_process(proc, signal.SIGTERM) == 0
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.COMPLETED and info.result == "done"
    assert raw.zcard("rediq:workers") == 0


def test_enqueue_during_a_server_stall_creates_exactly_one_task() -> None:
    """redis-py re-sends a command after a socket timeout; with the server SIGSTOPped the first
    copy is still queued in its socket, so both run when it resumes. The id makes it harmless."""
    server = ServerProcess(port=free_port()).start()
    try:
        target = parse_url(server.url)
        from engine import connection

        old = connection.SOCKET_TIMEOUT_S
        connection.SOCKET_TIMEOUT_S = 0.5
        try:
            client = Client(target)
        finally:
            connection.SOCKET_TIMEOUT_S = old
        client.enqueue("warm", None, queue="stall")  # scripts loaded, connection open
        probe = redis.Redis(port=server.port, decode_responses=True)
        before = probe.info("commandstats")["cmdstat_fcall"]["calls"]
        probe.close()
        server.signal(signal.SIGSTOP)
        threading.Timer(2.0, server.signal, args=(signal.SIGCONT,)).start()
        result = client.enqueue("order:payment", {"order": 1}, queue="stall", id="pay-1")
        r = redis.Redis(port=server.port, decode_responses=True)
        assert result.id == "pay-1"
        assert r.zcard("rediq:{stall}:pending") == 2  # 'warm' and exactly one 'pay-1'
        after = r.info("commandstats")["cmdstat_fcall"]["calls"]
        assert after - before >= 2  # the client really sent the enqueue more than once
        assert r.get("rediq:{stall}:seq") == "2"
        client.close()
    finally:
        server.signal(signal.SIGCONT)
        server.cleanup()


def test_sigterm_stops_a_worker_whose_redis_is_gone(tmp_path: Path) -> None:
    """With the server gone there is nothing to hand back; the worker must still exit."""
    server = ServerProcess(port=free_port()).start()
    try:
        Client(server.url).enqueue("quick", None, queue="crash")
        proc = spawn_worker(server.url, APP, "crash", "2", "1", log_path=tmp_path / "w.log")
        r = redis.Redis(port=server.port)
        wait_until_sync(lambda: r.zcard("rediq:workers") == 1, timeout=20)
        server.kill()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except Exception:
            proc.kill()
            raise AssertionError(
                "worker ignored SIGTERM with Redis gone:\n" + (tmp_path / "w.log").read_text()[-3000:]
            ) from None
        assert code in (0, 3)  # 3: E001, Redis unreachable
    finally:
        server.cleanup()


def test_a_task_prefetched_next_to_a_poison_task_still_runs(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    """With one slot, the innocent task is leased as *reserved* beside the poison task. When the
    poison kills the worker, the reserved task was never started, so it is not charged: it
    runs on the next worker instead of going dead with max_retry=0."""
    client = Client(redis_url)
    poison = client.enqueue("exit", None, queue="crash", max_retry=0, priority=0)
    innocent = client.enqueue("quick", None, queue="crash", max_retry=0, priority=10)
    for n in range(4):
        # one slot, one prefetched: the innocent task is leased reserved beside the poison
        proc = spawn_worker(redis_url, APP, "crash", "1", "1", "1", "1", log_path=tmp_path / f"w{n}.log")
        try:
            proc.wait(6)
        except Exception:  # noqa: BLE001 - alive: nothing (left) to crash on
            pass
        stop_process(proc, signal.SIGKILL)
        a, b = client.get_task(poison.id), client.get_task(innocent.id)
        if a is not None and b is not None and a.state.is_final and b.state.is_final:
            break
        time.sleep(1.1)  # the crashed worker's leases run out
    info = client.get_task(innocent.id)
    assert info is not None and info.state == TaskState.COMPLETED, (
        info.state if info else None,
        info and info.last_error,
    )
    assert info.attempts == 1
    dead = client.get_task(poison.id)
    assert dead is not None and dead.state == TaskState.DEAD and dead.attempts == 1
    assert any("expired before it started" in h.note for h in info.history)


def test_a_handed_off_task_that_kills_its_worker_runs_exactly_max_retry_plus_one_times(
    redis_url: str, raw: redis.Redis, tmp_path: Path
) -> None:
    """On the hand-off path the start is recorded before the handler runs: a worker killed by
    the handler leaves its attempt charged, so with max_retry=0 the task is not run again as
    attempt 1 (before, the handler ran ahead of its start mark, and the killed attempt came back
    uncharged: ctx.attempt repeated, and a poison task could kill workers forever)."""
    client = Client(redis_url)
    first = spawn_worker(redis_url, APP, "crash", "0.6", log_path=tmp_path / "w1.log")
    try:
        wait_until_sync(lambda: raw.hlen("rediq:{crash}:idle") > 0, timeout=20)  # registered
        r = client.enqueue("exit_at_once", None, queue="crash", max_retry=0)
        assert r.state == TaskState.ACTIVE  # handed off, not dequeued
        assert first.wait(20) == 13  # the handler killed it
    finally:
        stop_process(first, signal.SIGKILL)
    second = spawn_worker(redis_url, APP, "crash", "0.6", log_path=tmp_path / "w2.log")
    try:
        # the lease runs out; the second worker's dequeue recovers it (or, before the fix, runs it)
        wait_until_sync(
            lambda: (
                second.poll() is not None
                or ((t := client.get_task(r.id)) is not None and t.state == TaskState.DEAD)
            ),
            timeout=30,
        )
    finally:
        stop_process(second, signal.SIGKILL)
    assert [x.split(":")[:2] for x in runs(raw, r.id)] == [["start", "1"]]
    info = client.get_task(r.id)
    assert info is not None and info.state == TaskState.DEAD and info.attempts == 1
    assert info.last_error is not None and info.last_error.startswith("worker died during attempt 1")
