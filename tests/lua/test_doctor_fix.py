"""doctor_fix.lua: single-key repairs, each re-checking its condition at repair time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.typing import FieldT

from engine import doctor
from engine.backend import SyncBackend
from engine.errors import RediqError
from tests.lua.harness import ABSENT, BASE, QK, SETTINGS, Case, Z, cases, run_case, server_now

TABLE = cases(
    # 'unique': drop a unique lock whose holder is finished or gone
    Case(
        "unique: no lock, nothing to do",
        before={},
        reply=0,
        keys_after={"unique:u": ABSENT},
        args={"fix": ("unique:u", "unique", BASE)},
    ),
    *[
        Case(
            f"unique: holder {state}, kept",
            before={"a": {"state": state}},
            keys={"unique:u": "a"},
            reply=0,
            keys_after={"unique:u": "a"},
            args={"fix": ("unique:u", "unique", BASE)},
        )
        for state in ("pending", "scheduled", "waiting", "active", "retry")
    ],
    *[
        Case(
            f"unique: holder {state}, dropped",
            before={"a": {"state": state}},
            keys={"unique:u": "a"},
            reply=1,
            keys_after={"unique:u": ABSENT},
            args={"fix": ("unique:u", "unique", BASE)},
        )
        for state in ("completed", "dead", "cancelled", "quarantined")
    ],
    Case(
        "unique: holder gone, dropped",
        before={},
        keys={"unique:u": "a"},
        reply=1,
        keys_after={"unique:u": ABSENT},
        args={"fix": ("unique:u", "unique", BASE)},
    ),
    # 'group': drop members whose fingerprint is no longer the group's
    Case(
        "group: members still failing with this fingerprint are kept, others dropped",
        before={
            "a": {"state": "dead", "fp": "f1"},
            "b": {"state": "dead", "fp": "f2"},
            "c": {"state": "pending"},
        },
        keys={"fp:f1": Z({"a": "now", "b": "now", "c": "now", "d": "now"})},
        ids=("a", "b", "c", "d"),
        reply=3,
        keys_after={"fp:f1": Z({"a": None})},
        args={"fix": ("fp:f1", "group", BASE, "f1", "a", "b", "c", "d")},
    ),
    Case(
        "group: a listed id that is not a member counts nothing",
        before={"b": {"state": "pending"}},
        keys={"fp:f1": Z({"a": "now"})},
        reply=0,
        keys_after={"fp:f1": Z({"a": None})},
        args={"fix": ("fp:f1", "group", BASE, "f1", "b")},
    ),
    # 'counter': a per-minute counter without a TTL gets one
    Case(
        "counter: no TTL, given one",
        before={},
        keys={"stats:done:1": "5"},
        reply=1,
        keys_after={"stats:done:1": "5"},
        args={"fix": ("stats:done:1", "counter", 90000), "ttl": True},
    ),
    Case(
        "counter: already expiring, unchanged",
        before={},
        keys={"stats:done:1": "5"},
        expiring=("stats:done:1",),
        reply=0,
        args={"fix": ("stats:done:1", "counter", 90000)},
    ),
    Case(
        "counter: gone, nothing to do",
        before={},
        reply=0,
        keys_after={"stats:done:1": ABSENT},
        args={"fix": ("stats:done:1", "counter", 90000)},
    ),
    # 'seq': raise the sequence to the largest seq of the tasks named
    Case(
        "seq: behind, raised to the largest",
        before={"a": {"state": "pending", "seq": "7"}, "b": {"state": "pending", "seq": "12"}},
        keys={"seq": "3"},
        reply=1,
        keys_after={"seq": "12"},
        args={"fix": ("seq", "seq", BASE, "a", "b")},
    ),
    Case(
        "seq: missing, set",
        before={"a": {"state": "pending", "seq": "7"}},
        reply=1,
        keys_after={"seq": "7"},
        args={"fix": ("seq", "seq", BASE, "a")},
    ),
    Case(
        "seq: level with the largest, unchanged",
        before={"a": {"state": "pending", "seq": "7"}},
        keys={"seq": "7"},
        reply=0,
        keys_after={"seq": "7"},
        args={"fix": ("seq", "seq", BASE, "a")},
    ),
    Case(
        "seq: ahead, unchanged",
        before={"a": {"state": "pending", "seq": "7"}},
        keys={"seq": "9"},
        reply=0,
        keys_after={"seq": "9"},
        args={"fix": ("seq", "seq", BASE, "a", "gone")},
    ),
)


@TABLE
def test_doctor_fix(redis_url: str, case: Case) -> None:
    name, kind, *args = case.args["fix"]
    run_case(redis_url, case, doctor._fix(BASE + name, kind, *args))
    if case.args.get("ttl"):
        r = redis.Redis.from_url(redis_url)
        try:
            assert 0 < r.ttl(BASE + name) <= 90000
        finally:
            r.close()


# 'worker' and 'worker_hash' act on the global worker registry and a worker's hash (outside any
# queue), so their table checks those keys directly.


@dataclass(frozen=True)
class WorkerCase:
    name: str
    kind: str
    beat_age_ms: int | None
    """The worker's last heartbeat, ms before the cutoff (negative: after it); None: none."""
    reply: int
    left: bool
    """Whether the registry entry / worker hash is still there after."""
    hash_exists: bool = True


WORKER_TABLE = [
    WorkerCase("worker: beat before the cutoff, dropped", "worker", 1000, 1, False),
    WorkerCase("worker: beat exactly at the cutoff, dropped", "worker", 0, 1, False),
    WorkerCase("worker: beat since the cutoff, kept", "worker", -1000, 0, True),
    WorkerCase("worker: not registered, nothing to do", "worker", None, 0, False),
    WorkerCase("worker_hash: beat before the cutoff, deleted", "worker_hash", 1000, 1, False),
    WorkerCase("worker_hash: beat exactly at the cutoff, deleted", "worker_hash", 0, 1, False),
    WorkerCase("worker_hash: beat since the cutoff, kept", "worker_hash", -1000, 0, True),
    WorkerCase("worker_hash: no heartbeat field, deleted", "worker_hash", None, 1, False),
    WorkerCase("worker_hash: gone, nothing to do", "worker_hash", None, 0, False, hash_exists=False),
]


@pytest.mark.parametrize("case", WORKER_TABLE, ids=[c.name for c in WORKER_TABLE])
def test_doctor_fix_workers(redis_url: str, case: WorkerCase) -> None:
    ks = SETTINGS.keyspace
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        cutoff = server_now(r) - 60_000
        beat = None if case.beat_age_ms is None else cutoff - case.beat_age_ms
        if case.kind == "worker":
            key = ks.workers
            if beat is not None:
                r.zadd(key, {"w1": beat})
            r.zadd(key, {"w2": cutoff + 5000})  # a live neighbour, never touched
            reply = backend.execute(doctor._fix(key, "worker", cutoff, "w1"))
            left = r.zscore(key, "w1") is not None
            assert r.zscore(key, "w2") is not None
        else:
            key = ks.worker("w1")
            if case.hash_exists:
                fields: dict[FieldT, Any] = {"queues": "q"}
                if beat is not None:
                    fields["heartbeat"] = beat
                r.hset(key, mapping=fields)
            reply = backend.execute(doctor._fix(key, "worker_hash", cutoff))
            left = bool(r.exists(key))
        assert (reply, left) == (case.reply, case.left)
    finally:
        backend.close()
        r.close()


def test_doctor_fix_unknown_kind_is_an_error(redis_url: str) -> None:
    backend = SyncBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    try:
        with pytest.raises((RediqError, redis.ResponseError)) as info:
            backend.execute(doctor._fix(QK.seq, "bogus"))
        assert "doctor_fix: unknown kind bogus" in str(info.value)
    finally:
        backend.close()
