"""Which channel each script's events go to (``publish`` in ``_lib.lua``): ``pending`` and
``resumed`` on the queue's arrivals channel, where workers listen; the rest on its events
channel, so that a worker never receives the events of its own starts and acks."""

from __future__ import annotations

import redis

from engine.backend import SyncBackend
from engine.client import Client
from engine.worker import protocol
from tests.lua.harness import SETTINGS, published_events

WORKER = "w1"


def test_arrivals_go_to_the_arrivals_channel_and_the_rest_to_the_events_channel(redis_url: str) -> None:
    client = Client(redis_url, settings=SETTINGS)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        with published_events(redis_url) as seen:
            client.enqueue("t", {}, queue="q")  # pending
            reply = backend.execute(protocol.dequeue_call(SETTINGS, "q", 1, 30_000, WORKER, start_now=1))
            (job,) = protocol.parse_dequeue("q", reply)  # active
            backend.execute(protocol.ack_call(SETTINGS, "q", [(job.id, job.token, "")]))  # completed
            assert seen() == [("arrivals", "pending"), ("events", "active"), ("events", "completed")]
    finally:
        backend.close()
        client.close()
