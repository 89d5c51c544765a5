"""Bulk actions against a real server: chunks sized by the server time each script call took,
so none holds Valkey for long, and one audit entry per action however many chunks it took.

Time is measured on the server: each bulk script reports its own CPU time, and SLOWLOG (wall
time of each command) shows what an operator would see. On a loaded shared machine SLOWLOG also
counts the time the server waited for a CPU, so the checks allow a few calls caught that way;
the fixed 500-task chunks this replaced put every call in SLOWLOG (6-10 ms each idle, 20-50 ms
on this loaded box), which fails them.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from engine import admin, inspect
from engine.backend import Batch
from engine.cli import cli
from engine.client import Client
from engine.task import Task
from engine.worker import protocol
from tests.engine.test_operator_tools import lease

N = 20_000
QUEUE = "bulk"
SLOWLOG_US = 2_000


def enqueue(client: Client, n: int) -> None:
    for start in range(0, n, 2_000):
        client.enqueue_many([Task(type="t", queue=QUEUE) for _ in range(min(2_000, n - start))])


def watch_slowlog(raw: redis.Redis) -> None:
    raw.config_set("slowlog-log-slower-than", SLOWLOG_US)
    raw.config_set("slowlog-max-len", 100_000)
    raw.slowlog_reset()


def slow_calls(raw: redis.Redis, script: str) -> list[dict[str, Any]]:
    """SLOWLOG entries of one script's function (its name ends with ``_<script>``)."""
    pattern = re.compile(rb"^FCALL rediq_[0-9a-f]+_" + script.encode() + rb" ")
    return [e for e in raw.slowlog_get(100_000) if pattern.match(e["command"])]


def calls_of(raw: redis.Redis) -> int:
    return int(raw.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0))


def settled(raw: redis.Redis) -> None:
    """Wait until the server frees nothing in the background (the previous test's FLUSHALL is
    lazy): a script's CPU time is the process's, background threads included."""
    deadline = time.monotonic() + 60
    while int(raw.info("memory")["lazyfree_pending_objects"]) and time.monotonic() < deadline:
        time.sleep(0.05)


def assert_chunks_within_limit(sizer: admin.ChunkSizer, total: int) -> None:
    measured = [us for _, us in sizer.timings if us is not None]
    assert sum(n for n, _ in sizer.timings) == total
    assert len(measured) == len(sizer.timings), "Valkey reports each bulk call's CPU time"
    # The process's CPU time: another thread of the server (lazy freeing) or the host taking the
    # CPU away can add to a call now and then; the sizing shows in (nearly) all of them.
    within = sum(1 for us in measured if us <= admin.CHUNK_LIMIT_US)
    assert within >= len(measured) * 0.95, sorted(measured)[-10:]


def test_restore_all_of_20000_tasks_is_chunked_by_server_time_and_audited_once(
    client: Client, raw: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled(raw)
    enqueue(client, N)
    flushing = admin.ChunkSizer()
    assert client.call(admin.flush, QUEUE, "pending", None, flushing) == N
    assert_chunks_within_limit(flushing, N)

    sizers: list[admin.ChunkSizer] = []

    class Recorded(admin.ChunkSizer):
        """The sizer the CLI's restore builds, kept for its timings (behaviour unchanged)."""

        def __init__(self) -> None:
            super().__init__()
            sizers.append(self)

    monkeypatch.setattr(admin, "ChunkSizer", Recorded)
    watch_slowlog(raw)
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "queue", "restore", QUEUE, "--all", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"queue": QUEUE, "restored": N, "refused": {}}
    assert client.call(admin.count, QUEUE, "pending") == N

    [restoring] = sizers
    assert_chunks_within_limit(restoring, N)
    calls = len(restoring.timings)
    slow = slow_calls(raw, "restore")
    # on an idle machine none; a loaded one's scheduler catches a few calls mid-run (their CPU
    # time above stays short). Fixed 500-task chunks put every call here.
    assert len(slow) <= calls // 10, [(e["duration"], e["command"][:60]) for e in slow]

    entries = [e for e in client.call(inspect.audit, 50) if e.queue == QUEUE]
    assert [(e.action, e.count) for e in entries] == [("restore_all", N), ("flush", N)]


def make_dead(client: Client, n: int) -> None:
    enqueue(client, n)
    while jobs := lease(client, QUEUE, 500):
        client.backend.execute(
            Batch(
                [
                    protocol.fail_call(client.settings, QUEUE, j.id, j.token, "x", "", 0, "permanent")
                    for j in jobs
                ]
            )
        )


def test_requeue_all_is_chunked_and_audited_once(client: Client, raw: redis.Redis, redis_url: str) -> None:
    n = 3_000
    make_dead(client, n)
    raw.config_resetstat()
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "dead", "requeue", QUEUE, "--all", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"queue": QUEUE, "requeued": n, "refused": {}}
    assert calls_of(raw) >= n // admin.CHUNK_MAX + 1, "chunked"
    assert [(e.action, e.count) for e in client.call(inspect.audit, 50)] == [("requeue_all", n)]


def test_a_long_id_list_is_chunked_and_one_audit_entry(client: Client, raw: redis.Redis) -> None:
    n = 3_000
    enqueue(client, n)
    ids = [t.id for t in client.call(inspect.page, QUEUE, "pending", 0, n).tasks]
    raw.config_resetstat()
    assert sorted(client.call(admin.delete, QUEUE, ids)) == sorted(ids)
    assert calls_of(raw) >= n // admin.CHUNK_MAX + 1, "chunked"
    restored = client.call(admin.restore, QUEUE, ids)
    assert sorted(restored) == sorted(ids) and not restored.refused
    assert client.call(admin.count, QUEUE, "pending") == n
    actions = [(e.action, e.count) for e in client.call(inspect.audit, 50)]
    assert actions == [("restore", n), ("delete", n)]
