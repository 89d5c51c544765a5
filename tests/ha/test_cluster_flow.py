"""Flow control on a real Valkey Cluster: a queue's rate limit and its concurrency groups live
in the queue's slot (hash-tagged keys, group sets built inside Lua from the queue's base), so
dequeue enforces them with one script call on whichever primary holds the queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import admin, flow
from engine.client import Client
from engine.worker import protocol
from tests.ha import driver
from tests.ha.util import spread_queues
from tests.servers import ClusterSet

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@pytest.fixture
def client(fresh_cluster: ClusterSet) -> Iterator[Client]:
    c = Client(fresh_cluster.url)
    yield c
    c.close()


def test_rate_limits_and_groups_on_every_primary(fresh_cluster: ClusterSet, client: Client) -> None:
    for q in spread_queues(fresh_cluster, 3):
        client.call(admin.set_rate_limit, q, flow.parse_limit("2/h", 2))
        for _ in range(3):
            client.enqueue("job", None, queue=q)
        assert len(client.run(driver.dequeue(client.settings, q))) == 2  # the burst
        reply = client.backend.execute(protocol.dequeue_call(client.settings, q, 10, driver.LEASE_MS, "w"))
        assert protocol.parse_throttle(reply) is not None  # the next token is half an hour away
        assert client.call(flow.read_bucket, q).tokens == 0

        g = q + "-g"
        client.call(admin.set_group_limit, g, "*", 1)
        for _ in range(2):
            client.enqueue("job", None, queue=g, group="customer:42")
        (first,) = client.run(driver.dequeue(client.settings, g))
        assert client.run(driver.dequeue(client.settings, g)) == []  # its group is full
        assert client.call(flow.read_group, g, "customer:42").holding == 1
        client.run(driver.ack(client.settings, [first]))
        assert len(client.run(driver.dequeue(client.settings, g))) == 1
