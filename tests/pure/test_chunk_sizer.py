"""Bulk actions size their chunks by the server time each script call reported: the sizer's
rule from canned timings, and a whole ``restore_all`` driven by canned replies (chunk sizes
follow the sizer, one audit entry). No server."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from engine import admin
from engine.admin import CHUNK_LIMIT_US, CHUNK_MAX, CHUNK_START, CHUNK_TARGET_US, ChunkSizer
from engine.backend import Batch, Call
from engine.ops import Settings


def test_cheap_calls_grow_the_chunk_at_most_twofold_up_to_the_cap() -> None:
    sizer = ChunkSizer()
    assert sizer.size == CHUNK_START
    sizer.observe(CHUNK_START, 10)  # far under the target: the estimate says 50x, growth says 2x
    assert sizer.size == 2 * CHUNK_START
    for _ in range(20):
        sizer.observe(sizer.size, 10)
    assert sizer.size == CHUNK_MAX


def test_a_call_over_the_target_shrinks_the_next_to_the_target() -> None:
    sizer = ChunkSizer(size=100)
    sizer.observe(100, 2 * CHUNK_TARGET_US)
    assert sizer.size == 50


def test_a_call_over_the_limit_at_least_halves_the_next() -> None:
    sizer = ChunkSizer(size=100)
    sizer.observe(100, CHUNK_LIMIT_US + 1)
    assert sizer.size == 100 * CHUNK_TARGET_US // (CHUNK_LIMIT_US + 1)
    sizer = ChunkSizer(size=100)
    sizer.observe(3, CHUNK_LIMIT_US * 10)  # one very costly task per call: one task a call
    assert sizer.size == 1


def test_a_short_cheap_last_chunk_does_not_shrink_it_and_unmeasured_calls_keep_it() -> None:
    sizer = ChunkSizer(size=400)
    sizer.observe(3, 40)  # fixed costs dominate a tiny chunk: no evidence of slowness
    assert sizer.size == 400
    sizer.observe(400, None)  # Redis 7.0 cannot tell
    assert sizer.size == 400
    assert sizer.timings == [(3, 40), (400, None)]


@pytest.mark.parametrize("cost_us", [0.5, 5, 25, 90, 400])
def test_every_measured_chunk_stays_near_the_target_whatever_a_task_costs(cost_us: float) -> None:
    sizer = ChunkSizer()
    for _ in range(30):
        n = sizer.size
        sizer.observe(n, int(n * cost_us))
    later = [us for _, us in sizer.timings[1:]]
    assert all(us is not None and us <= CHUNK_TARGET_US for us in later), sizer.timings
    if cost_us * CHUNK_MAX > CHUNK_TARGET_US:  # not capped by CHUNK_MAX: close to the target
        assert (sizer.timings[-1][1] or 0) >= CHUNK_TARGET_US // 2 - cost_us


def drive_restore_all(quarantined: list[str], cost_us: int) -> tuple[int, list[int], list[Call]]:
    """``admin.restore_all`` against canned replies: a quarantine set of ``quarantined``, each
    restore reporting ``cost_us`` per task. Returns the count, the chunk sizes, the audit calls."""
    settings = Settings(prefix="p")
    remaining = list(quarantined)
    chunks: list[int] = []
    audits: list[Call] = []
    op: Generator[Any, Any, int] = admin.restore_all(settings, "q")
    reply: Any = None
    try:
        while True:
            request = op.send(reply)
            assert not isinstance(request, Batch)
            if request.script == "restore":
                ids = list(request.args[4:])
                chunks.append(len(ids))
                remaining = [i for i in remaining if i not in ids]
                reply = [ids, [], [], cost_us * len(ids)]
            elif request.command[0] == "SISMEMBER":
                reply = 1
            elif request.command[0] == "ZRANGE":
                start, stop = int(request.command[2]), int(request.command[3])
                reply = remaining[start : stop + 1]
            elif request.command[0] == "XADD":
                audits.append(request)
                reply = "1-0"
            else:
                reply = 0  # the dependency outbox and the like: nothing to do
    except StopIteration as done:
        return int(done.value), chunks, audits


def test_restore_all_is_one_audit_entry_with_chunks_sized_by_the_reported_time() -> None:
    count, chunks, audits = drive_restore_all([f"t{i}" for i in range(5_000)], cost_us=10)
    assert count == 5_000 and sum(chunks) == 5_000
    assert chunks[0] == CHUNK_START and max(chunks) == CHUNK_TARGET_US // 10
    [entry] = audits
    fields = list(entry.command)
    assert fields[fields.index("action") + 1] == "restore_all"
    assert fields[fields.index("count") + 1] == 5_000
