"""Kill a cluster primary in the middle of a run: the client carries on once a replica took
over, and nothing it was told was stored is lost (measured and recorded)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from redis.cluster import RedisCluster

from engine.client import Client
from engine.task import Task, TaskState
from tests.ha import driver
from tests.ha.conftest import record_figure
from tests.ha.util import retrying, spread_queues
from tests.servers import ClusterSet, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

TOTAL = 240
KILL_AT = 80


def test_client_survives_primary_kill_without_losing_acknowledged_tasks(cluster: ClusterSet) -> None:
    queues = spread_queues(cluster)
    client = Client(cluster.url)
    # Kill the client's *default node*: redis-py's cluster pipeline used to ask it for the keys
    # of every pipelined EVALSHA (COMMAND GETKEYS) and never recovered once it was gone.
    redis_cluster = client.backend.redis
    assert isinstance(redis_cluster, RedisCluster)
    default_port = int(redis_cluster.get_default_node().port)
    owners = {cluster.node_for_key(f"rediq:{{{q}}}:pending"): q for q in queues}
    assert default_port in owners, "the default node should be a primary"
    victim_port, victim_queue = default_port, owners[default_port]
    heirs = cluster.replica_of(victim_port)
    assert heirs, "the victim primary has no linked replica: no failover could happen"
    errors: list[str] = []
    stored: dict[str, str] = {}  # id -> queue, for every enqueue the client saw succeed
    completed: set[str] = set()
    kill_t: float | None = None
    failover_s: float | None = None
    for i in range(TOTAL):
        if i == KILL_AT:
            cluster.node(victim_port).kill()
            kill_t = time.monotonic()
        queue = queues[i % len(queues)]
        task = Task(type="job", payload={"i": i}, queue=queue)
        result = retrying(lambda t=task: client.enqueue(t), errors)
        assert result.id == task.id and result.status in ("new", "exists")
        stored[task.id] = queue
        if kill_t is not None and failover_s is None and queue == victim_queue:
            failover_s = time.monotonic() - kill_t
        if i % 12 == 11:  # consume as we go, through the same client
            for q in queues:
                jobs = retrying(lambda q=q: client.run(driver.dequeue(client.settings, q, 6)), errors)
                stale = retrying(lambda jobs=jobs: client.run(driver.ack(client.settings, jobs)), errors)
                completed.update(j.id for j in jobs if j.id not in stale)
    assert failover_s is not None
    # the replica of the killed primary now serves its slots
    promoted = cluster.node_for_key(f"rediq:{{{victim_queue}}}:pending")
    assert promoted in heirs and cluster.role(promoted) == "master"
    lost = []
    wrong_state = []
    for task_id, queue in stored.items():
        info = client.get_task(task_id, queue)
        if info is None:
            lost.append(task_id)
        elif task_id in completed and info.state != TaskState.COMPLETED:
            wrong_state.append((task_id, info.state))
    kinds = Counter(e.split(":")[0] for e in errors)
    record_figure(
        "cluster-primary-kill (sync client)",
        failover_s=round(failover_s, 2),
        enqueued=len(stored),
        completed_acknowledged=len(completed),
        tasks_lost=len(lost),
        completions_lost=len(wrong_state),
        client_errors=dict(kinds),
    )
    assert failover_s < 20, f"failover took {failover_s:.1f}s"
    assert lost == [], f"{len(lost)} acknowledged enqueues lost"
    assert wrong_state == [], f"{len(wrong_state)} acknowledged completions lost: {wrong_state[:3]}"
    # every error the application saw during the failover was the engine's own, one line
    assert all(e.startswith("engine.errors.") for e in errors), errors[:5]
    # the cluster is whole again from the client's point of view: inspect reads every queue
    wait_for("cluster ok after failover", cluster.healthy, 30)
    client.close()
