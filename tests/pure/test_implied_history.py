"""task_info reads the entries a hash written with 'entered' implies (engine/scripts/_lib.lua,
settle_active and settle_completed), from canned hashes: no server needed for the reading."""

from __future__ import annotations

import json

from engine.ops import task_info

BASE = {"id": "a", "type": "t", "enq": "100", "entered": "pending", "attempts": "1"}


def states(fields: dict[str, str], history: tuple[list[object], ...] = ()) -> list[tuple[str, int, str]]:
    info = task_info("q", fields, [json.dumps(e) for e in reversed(history)])
    return [(h.state, h.at_ms, h.note) for h in info.history]


def test_an_active_task_reads_its_implied_start() -> None:
    fields = {**BASE, "state": "active", "started": "200", "worker": "w1", "lease": "900"}
    assert states(fields) == [("active", 200, "w1"), ("pending", 100, "enqueued")]
    assert task_info("q", fields).lease_expiry_ms == 900


def test_a_completed_task_reads_start_and_completion_and_no_lease() -> None:
    fields = {**BASE, "state": "completed", "started": "200", "worker": "w1", "finished": "300"}
    fields["lease"] = "900"
    assert states(fields) == [("completed", 300, ""), ("active", 200, "w1"), ("pending", 100, "enqueued")]
    assert task_info("q", fields).lease_expiry_ms is None  # ack.lua leaves the last lease


def test_a_start_written_down_is_not_implied_again() -> None:
    fields = {**BASE, "state": "retry", "started": "200", "worker": "w1"}
    listed = ([200, "active", "w1"], [250, "retry", "boom"])
    assert states(fields, listed) == [
        ("retry", 250, "boom"),
        ("active", 200, "w1"),
        ("pending", 100, "enqueued"),
    ]


def test_a_cancel_request_in_the_same_millisecond_is_not_taken_for_the_start() -> None:
    """cancel.lua writes the start down before its request; the request's entry (same time,
    another note) does not stand for the start."""
    fields = {**BASE, "state": "active", "started": "200", "worker": "w1"}
    listed = ([200, "active", "w1"], [200, "active", "cancel requested: x"])
    assert states(fields, listed)[:3] == [
        ("active", 200, "cancel requested: x"),
        ("active", 200, "w1"),
        ("pending", 100, "enqueued"),
    ]


def test_a_hash_without_entered_reads_its_list_alone() -> None:
    fields = {"id": "a", "state": "active", "started": "200", "worker": "w1", "enq": "100"}
    assert states(fields, ([100, "pending", "enqueued"],)) == [("pending", 100, "enqueued")]
