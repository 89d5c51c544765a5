"""``min-replicas-to-write 1`` on a Cluster: how many replicas per primary keep writes flowing
after one node dies. With one replica, the promoted replica has none left and refuses every
write (``NOREPLICAS``) for as long as the dead node stays down; with two, writes resume once
the failover is done. Measured and recorded for docs/ha.md."""

from __future__ import annotations

import time

import pytest

from engine.client import Client
from engine.errors import ConnectionFailed
from tests.ha.conftest import record_figure
from tests.ha.util import spread_queues
from tests.servers import ClusterSet, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

MIN_REPLICAS = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"]
WATCH_S = 15.0
"""How long after the kill the victim's slots are watched."""


def _watch_writes(cluster: ClusterSet, replicas: int) -> tuple[float | None, int, int]:
    """Kill the primary of one queue; for ``WATCH_S`` seconds keep enqueueing to it. Returns
    (seconds until the first accepted write, writes accepted, writes refused)."""
    queue = spread_queues(cluster, 1)[0]
    victim = cluster.node_for_key(f"rediq:{{{queue}}}:pending")
    heirs = cluster.replica_of(victim)
    assert len(heirs) == replicas
    client = Client(cluster.url)
    assert client.enqueue("warm", None, queue=queue).status == "new"  # writes flow before
    cluster.node(victim).kill()
    killed = time.monotonic()
    first: float | None = None
    accepted = refused = 0
    while time.monotonic() - killed < WATCH_S:
        try:
            client.enqueue("job", None, queue=queue)
        except ConnectionFailed:
            refused += 1
            time.sleep(0.05)
            continue
        accepted += 1
        if first is None:
            first = time.monotonic() - killed
    client.close()
    # the failover itself happened in both cases: one of the heirs serves the slots now
    wait_for("a replica took over", lambda: cluster.node_for_key(f"rediq:{{{queue}}}:pending") in heirs, 30)
    return first, accepted, refused


@pytest.mark.parametrize("replicas", [1, 2])
def test_writes_after_one_primary_dies_with_min_replicas_to_write_1(replicas: int) -> None:
    cluster = ClusterSet(replicas=replicas, extra_args=MIN_REPLICAS).start()
    try:
        first, accepted, refused = _watch_writes(cluster, replicas)
    finally:
        cluster.cleanup()
    record_figure(
        f"cluster min-replicas-to-write 1, {replicas} replica(s) per primary, one primary killed",
        first_write_s=None if first is None else round(first, 2),
        writes_accepted=accepted,
        writes_refused=refused,
        watched_s=WATCH_S,
    )
    if replicas == 1:
        # the promoted replica has no replica of its own: no write for as long as we watch
        assert accepted == 0 and refused > 0
    else:
        assert first is not None and first < 10 and accepted > 0
