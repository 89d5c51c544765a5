"""Which channel each script's events go to (``publish`` in ``_lib.lua``): ``pending`` and
``resumed`` on the queue's arrivals channel, where workers listen; the rest on its events
channel, so that a worker never receives the events of its own starts and acks."""

from __future__ import annotations

import json
import time

import redis

from engine.backend import SyncBackend
from engine.client import Client
from engine.worker import protocol
from tests.lua.harness import QK, SETTINGS

WORKER = "w1"


def test_arrivals_go_to_the_arrivals_channel_and_the_rest_to_the_events_channel(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    listener = r.pubsub()
    listener.psubscribe("*")
    confirmed = listener.get_message(timeout=10)
    assert confirmed is not None and confirmed["type"] == "psubscribe", confirmed
    client = Client(redis_url, settings=SETTINGS)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        client.enqueue("t", {}, queue="q")  # pending
        reply = backend.execute(protocol.dequeue_call(SETTINGS, "q", 1, 30_000, WORKER, start_now=1))
        (job,) = protocol.parse_dequeue("q", reply)  # active
        backend.execute(protocol.ack_call(SETTINGS, "q", [(job.id, job.token, "")]))  # completed
        r.publish("lt-test-end", "end")  # every event of the calls arrives before it
        seen: list[tuple[str, str]] = []
        names = {QK.events: "events", QK.arrivals: "arrivals"}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = listener.get_message(timeout=1)
            if message is None:
                continue
            if message["channel"] == "lt-test-end":
                break
            seen.append((names.get(message["channel"], message["channel"]), json.loads(message["data"])["e"]))
        else:
            raise AssertionError("the end marker never arrived")
        assert seen == [("arrivals", "pending"), ("events", "active"), ("events", "completed")]
    finally:
        listener.close()
        backend.close()
        client.close()
        r.close()
