"""The worker's slots (``engine.worker.slots``): which reserved task a free slot takes first, and
which one a lost lease forgets. No server."""

from __future__ import annotations

from engine.worker.protocol import Job
from engine.worker.slots import Slots

W = "host:1:abc"


def reserved(task_id: str, queue: str, priority: int, delivery: int = 1) -> Job:
    return Job(task_id, queue, "t", "{}", priority, 3, 60.0, 0, "", 1, True, f"{W}#{delivery}")


def test_a_free_slot_takes_the_first_queue_then_the_lowest_priority_number_then_the_oldest() -> None:
    slots = Slots(("hi", "lo"), concurrency=1, prefetch=10)
    slots.reserve(
        [
            reserved("lo-urgent", "lo", 0),  # the lower queue waits, however urgent
            reserved("hi-late", "hi", 90),
            reserved("hi-urgent", "hi", 0),
            reserved("hi-late-2", "hi", 90),  # same queue and priority: after the older one
        ]
    )
    order = [job.id for _ in range(4) for jobs in slots.take_reserved(1).values() for job in jobs]
    assert order == ["hi-urgent", "hi-late", "hi-late-2", "lo-urgent"]
    assert slots.take_reserved(1) == {}


def test_take_reserved_groups_the_best_per_queue() -> None:
    slots = Slots(("hi", "lo"), concurrency=3, prefetch=3)
    slots.reserve([reserved("l", "lo", 0), reserved("h2", "hi", 50), reserved("h1", "hi", 10)])
    taken = slots.take_reserved(2)
    assert {q: [j.id for j in jobs] for q, jobs in taken.items()} == {"hi": ["h1", "h2"]}
    assert [b.job.id for b in slots.buffer] == ["l"]


def test_a_lost_lease_forgets_only_that_delivery() -> None:
    """Tokens are per delivery: another task at the same delivery number shares the token text,
    and the same task may be held again under a later one."""
    slots = Slots(("q",), concurrency=1, prefetch=3)
    slots.reserve([reserved("a", "q", 50), reserved("b", "q", 50), reserved("a", "q", 50, delivery=2)])
    slots.drop_reserved("a", f"{W}#1")
    assert sorted((b.job.id, b.job.token) for b in slots.buffer) == [("a", f"{W}#2"), ("b", f"{W}#1")]
    assert [j.id for jobs in slots.take_reserved(2).values() for j in jobs] == ["b", "a"]


def test_capacity_and_free_slots() -> None:
    slots = Slots(("q",), concurrency=2, prefetch=1)
    assert (slots.free(False), slots.capacity) == (2, 3)
    slots.reserve([reserved("r", "q", 50)])
    slots.handoff_starting = 1
    assert (slots.free(False), slots.capacity) == (1, 1)
    assert slots.free(True) == 0  # a stopping worker starts nothing
