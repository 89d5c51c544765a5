"""Sentinel: a primary, two replicas and three sentinels on loopback. Clients reach the primary
through ``redis+sentinel://`` and follow it when it is killed and a replica is promoted."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from engine import inspect, ops
from engine.client import AsyncClient, Client
from engine.errors import ConnectionFailed
from engine.task import Task, TaskState
from tests.ha import driver
from tests.ha.conftest import record_figure
from tests.ha.util import retrying
from tests.servers import SentinelSet, ServerProcess, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    s = SentinelSet(replicas=2, sentinels=3, min_replicas=1).start()
    yield s
    s.cleanup()


async def test_async_client_through_sentinel(sentinels: SentinelSet) -> None:
    async with AsyncClient(sentinels.url) as client:
        r = await client.enqueue("hello", {"x": 1}, queue="sentinel-async")
        info = await client.get_task(r.id)
        assert info is not None and info.state == TaskState.PENDING and info.payload == {"x": 1}


def test_durable_enqueue_waits_for_a_replica(sentinels: SentinelSet) -> None:
    """``WAIT 1`` after the enqueue: fine with replicas linked; with every replica frozen (but
    not yet ``min-replicas-max-lag`` late, so the primary still accepts the write) the durable
    enqueue reports that the task may not survive a failover."""
    client = Client(sentinels.url)
    task = Task(type="durable", queue="durable")
    assert client.enqueue_many([task], durable=True)[0].status == "new"
    replicas = [n for n in sentinels.data if n.port != sentinels.primary_port()]
    for n in replicas:
        n.signal(signal.SIGSTOP)
    try:
        frozen = Task(type="durable", queue="durable")
        with pytest.raises(ConnectionFailed, match="reached 0 of 1 replica"):
            client.run(ops.durable(ops.enqueue_many(client.settings, [frozen]), timeout_ms=300))
        # the plain enqueue "succeeded": only durable noticed the write is on the primary alone
        assert client.get_task(frozen.id) is not None
    finally:
        for n in replicas:
            n.signal(signal.SIGCONT)
    retried = client.run(ops.durable(ops.enqueue_many(client.settings, [frozen]), timeout_ms=2000))
    assert retried[0].status == "exists"  # idempotent retry, now acknowledged by a replica
    sentinels.wait_healthy()
    client.close()


def test_enqueue_inspect_and_failover(sentinels: SentinelSet) -> None:
    old_primary = sentinels.primary_port()
    client = Client(sentinels.url)
    first = client.enqueue("job", {"i": -1}, queue="ha")
    assert client.call(inspect.queue, "ha").count(TaskState.PENDING) == 1  # type: ignore[union-attr]
    # the write reached the replicas too (min-replicas-to-write 1 accepted it)
    stored: list[str] = [first.id]
    completed: set[str] = set()
    errors: list[str] = []
    kill_t: float | None = None
    failover_s: float | None = None
    for i in range(150):
        if i == 50:
            sentinels.node(old_primary).kill()
            kill_t = time.monotonic()
        result = retrying(lambda i=i: client.enqueue("job", {"i": i}, queue="ha", id=f"t{i}"), errors)  # type: ignore[misc]
        stored.append(result.id)
        if kill_t is not None and failover_s is None:
            failover_s = time.monotonic() - kill_t
        if i % 10 == 9:
            jobs = retrying(lambda: client.run(driver.dequeue(client.settings, "ha", 5)), errors)
            stale = retrying(lambda jobs=jobs: client.run(driver.ack(client.settings, jobs)), errors)  # type: ignore[misc]
            completed.update(j.id for j in jobs if j.id not in stale)
    assert failover_s is not None
    new_primary = sentinels.primary_port()
    assert new_primary != old_primary
    lost = [t for t in stored if client.get_task(t, "ha") is None]
    wrong = [
        t
        for t in completed
        if (info := client.get_task(t, "ha")) is None or info.state != TaskState.COMPLETED
    ]
    record_figure(
        "sentinel-primary-kill (sync client)",
        failover_s=round(failover_s, 2),
        enqueued=len(stored),
        completed_acknowledged=len(completed),
        tasks_lost=len(lost),
        completions_lost=len(wrong),
        client_errors=dict(Counter(e.split(":")[0] for e in errors)),
    )
    assert failover_s < 20
    assert lost == [] and wrong == []
    assert all(e.startswith("engine.errors.ConnectionFailed") for e in errors), errors[:3]
    # the promoted primary still has a replica, so min-replicas-to-write keeps accepting writes
    assert client.call(inspect.queue, "ha").count(TaskState.COMPLETED) == len(completed)  # type: ignore[union-attr]
    client.close()


def test_min_replicas_to_write_refusal_is_one_line_connection_failed() -> None:
    """A primary that lost its replicas refuses writes (the split-brain guard); the client
    sees a one-line ConnectionFailed naming NOREPLICAS, and reads still work."""
    server = ServerProcess(port=free_port(), extra_args=["--min-replicas-to-write", "1"]).start()
    try:
        client = Client(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(ConnectionFailed) as caught:
            client.enqueue("job", None, queue="guarded")
        assert "NOREPLICAS" in str(caught.value) and "\n" not in str(caught.value)
        assert client.call(inspect.queue_names) == []  # reads are allowed
        client.close()
    finally:
        server.cleanup()
