"""Each doctor repair re-checks its condition when it runs: when the state changed between the
doctor's snapshot and its repair (a worker beat, a task was requeued, a counter got its TTL),
the repair does nothing and the finding is dropped. The change is made deterministically
between two of the doctor's requests (``drive`` from test_doctor_live). Also the failure-group
check, found and repaired, and the library check outside functions mode."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from engine import doctor, lua
from engine.backend import Batch, Call, SyncBackend
from engine.client import Client
from tests.engine.test_doctor_live import drive, findings, once


def sends(*prefix: str) -> Callable[[Call | Batch], bool]:
    """The doctor's request that starts with these command words."""
    return lambda r: isinstance(r, Call) and tuple(r.command[: len(prefix)]) == prefix


def kinds(found: list[doctor.Finding]) -> list[tuple[str, str]]:
    return sorted((f.kind, f.item) for f in found)


def test_a_failure_group_member_that_no_longer_fails_is_found_and_dropped(
    client: Client, raw: redis.Redis
) -> None:
    qk = client.settings.keyspace.queue("dr1")
    a = client.enqueue("t", None, queue="dr1").id
    b = client.enqueue("t", None, queue="dr1").id
    raw.hset(
        qk.failures, "fp1", json.dumps({"type": "t", "sample": "boom", "first": 1, "last": 1, "total": 2})
    )
    raw.zadd(qk.fingerprint("fp1"), {a: 1, b: 1})
    raw.hset(qk.task(b), "fp", "fp1")  # b still fails with it; a does not (it was requeued)
    assert kinds(findings(client, "dr1")) == [("stale_group_member", a)]
    assert kinds(findings(client, "dr1", repair=True)) == [("stale_group_member", a)]
    assert raw.zrange(qk.fingerprint("fp1"), 0, -1) == [b]
    assert findings(client, "dr1") == []


def test_an_empty_failure_group_is_not_a_finding(client: Client, raw: redis.Redis) -> None:
    qk = client.settings.keyspace.queue("dr2")
    client.enqueue("t", None, queue="dr2")
    raw.hset(
        qk.failures, "fp1", json.dumps({"type": "t", "sample": "boom", "first": 1, "last": 1, "total": 1})
    )
    assert findings(client, "dr2", repair=True) == []


def test_a_member_that_fails_again_before_the_repair_stays_in_its_group(
    client: Client, raw: redis.Redis
) -> None:
    qk = client.settings.keyspace.queue("dr3")
    a = client.enqueue("t", None, queue="dr3").id
    raw.hset(
        qk.failures, "fp1", json.dumps({"type": "t", "sample": "boom", "first": 1, "last": 1, "total": 1})
    )
    raw.zadd(qk.fingerprint("fp1"), {a: 1})
    # the doctor has read a's fingerprint (none); a fails again with fp1 before the repair
    after = once(
        lambda r: isinstance(r, Batch) and any(c.command[:2] == ("HGET", qk.task(a)) for c in r.calls),
        lambda: raw.hset(qk.task(a), "fp", "fp1"),
    )
    found = drive(client, doctor.examine(client.settings, repair=True), after)
    assert [f for f in found if f.queue == "dr3"] == []
    assert raw.zrange(qk.fingerprint("fp1"), 0, -1) == [a]


def test_a_unique_lock_whose_holder_is_requeued_before_the_repair_is_kept(
    client: Client, raw: redis.Redis
) -> None:
    qk = client.settings.keyspace.queue("dr4")
    a = client.enqueue("t", None, queue="dr4", unique_key="u").id
    raw.hset(qk.task(a), "state", "completed")  # finished while holding its lock: stale
    raw.zrem(qk.pending, a)
    raw.zadd(qk.completed, {a: 1})
    assert kinds(findings(client, "dr4")) == [("stale_unique_lock", "u")]

    def requeue() -> None:  # after the doctor read the holder's state: it comes back to life
        raw.hset(qk.task(a), "state", "pending")
        raw.zrem(qk.completed, a)
        raw.zadd(qk.pending, {a: 1})

    after = once(sends("HGET", qk.task(a), "state"), requeue)
    found = drive(client, doctor.examine(client.settings, repair=True), after)
    assert [f for f in found if f.kind == "stale_unique_lock" and f.queue == "dr4"] == []
    assert raw.get(qk.unique("u")) == a


def test_a_counter_given_a_ttl_before_the_repair_is_not_reported(client: Client, raw: redis.Redis) -> None:
    qk = client.settings.keyspace.queue("dr5")
    client.enqueue("t", None, queue="dr5")
    key = qk.stat("done", 1)
    raw.set(key, 3)
    assert kinds(findings(client, "dr5")) == [("counter_without_ttl", key)]
    after = once(sends("TTL", key), lambda: raw.expire(key, 50))
    found = drive(client, doctor.examine(client.settings, repair=True), after)
    assert [f for f in found if f.queue == "dr5"] == []
    assert 0 < raw.ttl(key) <= 50  # the one given in between, not the doctor's


def test_a_sequence_that_moves_on_before_the_repair_is_not_reported(client: Client, raw: redis.Redis) -> None:
    qk = client.settings.keyspace.queue("dr6")
    a = client.enqueue("t", None, queue="dr6").id
    raw.hset(qk.task(a), "seq", 40)
    raw.set(qk.seq, 5)
    assert kinds(findings(client, "dr6")) == [("sequence_behind", qk.seq)]
    after = once(sends("GET", qk.seq), lambda: raw.set(qk.seq, 90))
    found = drive(client, doctor.examine(client.settings, repair=True), after)
    assert [f for f in found if f.queue == "dr6"] == []
    assert raw.get(qk.seq) == "90"


def test_a_worker_that_beats_before_the_repair_is_not_removed(client: Client, raw: redis.Redis) -> None:
    ks = client.settings.keyspace
    raw.zadd(ks.workers, {"w-late": 1000})  # long dead, by its last beat
    raw.hset(ks.worker("w-late"), mapping={"heartbeat": 1000})
    assert ("dead_worker", "w-late") in kinds(client.call(doctor.examine))

    def beat() -> None:
        now = int(raw.time()[0]) * 1000
        raw.zadd(ks.workers, {"w-late": now})
        raw.hset(ks.worker("w-late"), "heartbeat", now)

    after = once(sends("ZRANGE", ks.workers), beat)
    found = drive(client, doctor.examine(client.settings, repair=True), after)
    assert [f for f in found if f.kind == "dead_worker"] == []
    assert raw.zscore(ks.workers, "w-late") is not None and raw.exists(ks.worker("w-late"))


@pytest.mark.parametrize("mode", [lua.ScriptMode.EVAL])
def test_outside_functions_mode_there_is_no_library_to_check(redis_url: str, mode: lua.ScriptMode) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.function_flush()  # no library anywhere: in eval mode that is no finding
    backend = SyncBackend(r, script_mode=mode)
    try:
        assert doctor.examine_library(backend, repair=True) == []
    finally:
        backend.close()


def test_a_missing_library_is_found_and_loaded_by_the_repair(redis_url: str) -> None:
    backend = SyncBackend(
        redis.Redis.from_url(redis_url, decode_responses=True), script_mode=lua.ScriptMode.FUNCTIONS
    )
    try:
        backend.redis.function_flush()
        (finding,) = doctor.examine_library(backend)
        assert (finding.kind, finding.repaired) == ("function_library_missing", False)
        (finding,) = doctor.examine_library(backend, repair=True)
        assert finding.repaired
        assert doctor.examine_library(backend) == []
    finally:
        backend.close()
