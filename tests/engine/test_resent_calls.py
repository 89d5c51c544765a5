"""Calls sent again after their reply was lost (redis-py re-sends a request after a socket
timeout, the worker asks again once Redis is back) get the answer their first copy would have
had. A dequeue returns the tasks its first copy leased (its receipt) instead of leasing more and
leaving those held by nobody until their lease runs out; a start mark still starts the tasks;
an acknowledgement is not reported as stale."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from engine.client import Client
from engine.task import Task
from engine.worker import protocol

RECEIPT = "rediq:{rcpt}:receipt:w1"


def dequeue(
    client: Client,
    request_id: str,
    n: int = 3,
    *,
    worker: str = "w1",
    lease_ms: int = 30_000,
    start_now: int = 3,
) -> list[protocol.Job]:
    reply: Any = client.backend.execute(
        protocol.dequeue_call(
            client.settings, "rcpt", n, lease_ms, worker, start_now=start_now, request_id=request_id
        )
    )
    return protocol.parse_dequeue("rcpt", reply)


def enqueue(client: Client, n: int) -> list[str]:
    return [r.id for r in client.enqueue_many([Task(type="t", queue="rcpt", payload=i) for i in range(n)])]


def test_a_request_sent_again_gets_the_same_tasks_and_leases_no_more(
    client: Client, raw: redis.Redis
) -> None:
    ids = enqueue(client, 5)
    first = dequeue(client, "7", start_now=2)
    again = dequeue(client, "7", start_now=2)
    assert [j.id for j in first] == ids[:3]
    # the copy returns what the first copy leased, as it leased it: started ones charged once,
    # the prefetched one still reserved
    assert [(j.id, j.attempt, j.reserved, j.payload_raw) for j in again] == [
        (j.id, j.attempt, j.reserved, j.payload_raw) for j in first
    ]
    assert [j.reserved for j in again] == [False, False, True]
    assert [client.get_task(i).attempts for i in ids[:3]] == [1, 1, 0]  # type: ignore[union-attr]
    assert raw.zcard("rediq:{rcpt}:pending") == 2 and raw.zcard("rediq:{rcpt}:active") == 3
    # the receipt lasts one lease, no longer
    assert 0 < raw.pttl(RECEIPT) <= 30_000
    assert json.loads(raw.get(RECEIPT) or "[]") == ["7", *ids[:3]]


def test_a_new_request_leases_new_tasks_and_an_empty_one_leaves_the_receipt(
    client: Client, raw: redis.Redis
) -> None:
    ids = enqueue(client, 4)
    assert [j.id for j in dequeue(client, "1")] == ids[:3]
    assert [j.id for j in dequeue(client, "2")] == ids[3:]
    assert json.loads(raw.get(RECEIPT) or "[]") == ["2", ids[3]]
    assert dequeue(client, "3") == []  # nothing leased: the last receipt stays as it was
    assert json.loads(raw.get(RECEIPT) or "[]") == ["2", ids[3]]
    assert [j.id for j in dequeue(client, "2")] == ids[3:]
    # without a request id (an older caller) there is no receipt and no replay
    client.enqueue("t", 9, queue="rcpt")
    assert len(dequeue(client, "", worker="w2")) == 1
    assert not raw.exists("rediq:{rcpt}:receipt:w2")


def test_a_receipt_never_returns_a_task_the_worker_no_longer_holds(client: Client, raw: redis.Redis) -> None:
    ids = enqueue(client, 3)
    held = dequeue(client, "1", lease_ms=300)
    assert len(held) == 3
    client.backend.execute(protocol.ack_call(client.settings, "rcpt", [(ids[0], held[0].token, "")]))
    time.sleep(0.4)  # the other two leases run out; another worker recovers and takes them
    taken = dequeue(client, "1", worker="w2", n=5)
    assert sorted(j.id for j in taken) == sorted(ids[1:]) and all(j.attempt == 2 for j in taken)
    raw.set(RECEIPT, json.dumps(["1", *ids]), px=30_000)  # even if the receipt outlived the lease
    assert dequeue(client, "1") == []
    assert raw.zcard("rediq:{rcpt}:active") == 2


def test_a_start_mark_sent_again_still_starts_the_tasks_and_charges_once(
    client: Client, raw: redis.Redis
) -> None:
    enqueue(client, 2)
    jobs = dequeue(client, "1", start_now=0)
    assert all(j.reserved and j.attempt == 0 for j in jobs)
    assert [j.token for j in jobs] == ["w1#1", "w1#1"]
    start = protocol.start_call(client.settings, "rcpt", jobs)
    first: Any = client.backend.execute(start)
    again: Any = client.backend.execute(start)
    assert again == first == [x for j in jobs for x in (j.id, 1)]
    assert [client.get_task(j.id).attempts for j in jobs] == [1, 1]  # type: ignore[union-attr]
    # another worker's mark, or one for another delivery, is still refused
    for token in ("w2#1", "w1#2", "w1#0"):
        jobs[0].token = token
        other: Any = client.backend.execute(protocol.start_call(client.settings, "rcpt", jobs[:1]))
        assert other == [jobs[0].id, 0]
    assert client.get_task(jobs[0].id).attempts == 1  # type: ignore[union-attr]


def test_an_acknowledgement_sent_again_is_not_stale(client: Client, raw: redis.Redis) -> None:
    ids = enqueue(client, 2)
    held = dequeue(client, "1")
    ack = protocol.ack_call(client.settings, "rcpt", [(ids[0], held[0].token, "")])
    assert client.backend.execute(ack) == [[], []]
    assert client.backend.execute(ack) == [[], []]
    assert client.get_task(ids[0]).state == "completed"  # type: ignore[union-attr]
    # an ack of a delivery that does not own the task is still refused
    wrong: Any = client.backend.execute(protocol.ack_call(client.settings, "rcpt", [(ids[1], "w1#2", "")]))
    assert wrong == [[ids[1]], []]
    other_ack = protocol.ack_call(client.settings, "rcpt", [(ids[0], "w2#1", "")])
    completed_other: Any = client.backend.execute(other_ack)
    assert completed_other == [[ids[0]], []]
    assert raw.zcard("rediq:{rcpt}:active") == 1  # ids[1], still leased
