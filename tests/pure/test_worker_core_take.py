"""The worker core's takes (``WorkerCore.take_exchange``): while a queue is drained, its inbox
loop waits in a held slot and ``take.lua`` starts the hand-off in the round trip that moves
it. Driven by canned replies: no Valkey, no asyncio, no clock. What must hold: a slot is held
only when one is free and nothing waits reserved, never in a backlog; the dequeue leaves the
held slot alone yet offers it to enqueues; what a take started runs once (a record returned
again is not run twice, a refused one never); a lost take keeps its confirmation; a held slot
wanted elsewhere is woken once."""

from __future__ import annotations

import json
from typing import Any

from engine.worker.core import Dequeue, Exchange, FailureKind, Fenced, Start, Take, WorkerCore
from engine.worker.messages import ExchangeKind
from tests.pure.test_worker_core import W, answer, dequeued, make, requests_of, runs, task


def record(task_id: str, dlv: int = 1) -> str:
    return json.dumps([task_id, "t", "{}", "0", "3", "60000", 0, "", "1", "1", f"{W}#{dlv}"])


def drained(c: WorkerCore, reply: list[Any] | None = None) -> None:
    """A round whose dequeue found less than it asked for (the worker registered)."""
    ex = c.next_exchange()
    assert ex is not None
    answer(c, ex, dequeue=reply or [0])


def take(c: WorkerCore, queue: str = "q") -> Exchange:
    ex = c.take_exchange(queue, 1.0)
    assert ex is not None and ex.kind is ExchangeKind.HANDOFF_TAKE
    return ex


def test_no_take_before_the_queue_is_known_drained_nor_in_a_backlog() -> None:
    c = make(concurrency=2, prefetch=0)
    assert c.take_exchange("q", 1.0) is None  # no dequeue answered yet
    full = dequeued(task("a", reserved=False), task("b", reserved=False))
    drained(c, full)  # asked for 2, got 2: more may wait, no hand-off will come
    assert c.take_exchange("q", 1.0) is None
    c2 = make(concurrency=2, prefetch=0)
    drained(c2)
    assert c2.take_exchange("q", 1.0) is not None


def test_a_take_holds_one_free_slot_which_the_dequeue_leaves_alone_but_offers_to_enqueues() -> None:
    c = make(concurrency=2, prefetch=0)
    drained(c)
    ex = take(c)
    (t,) = requests_of(ex, Take)
    assert (t.queue, t.confirmed, t.wait_s, t.room) == ("q", (), 1.0, 1)
    assert c.slots.free(False) == 1
    assert c.take_exchange("q", 1.0) is None  # one take per queue
    c.on_work_arrived()
    (dq,) = requests_of(c.next_exchange(), Dequeue)
    assert (dq.start_now, dq.held) == (1, 1)


def test_no_slot_free_or_a_task_waiting_reserved_means_a_plain_pop() -> None:
    c = make(concurrency=1, prefetch=1)
    drained(c, dequeued(task("a", reserved=False)))  # asked for 2, got 1: drained, slot full
    assert c.take_exchange("q", 1.0) is None
    c2 = make(concurrency=2, prefetch=2)
    drained(c2, dequeued(task("a", reserved=False), task("b", reserved=True)))
    assert c2.slots.buffer  # (b starts with the next exchange; until then no slot is held)
    assert c2.take_exchange("q", 1.0) is None


def test_what_a_take_started_runs_and_its_records_are_confirmed_with_the_next_take() -> None:
    c = make(concurrency=2, prefetch=0)
    drained(c)
    effects = answer(c, take(c), take=[0, record("h"), 1])
    assert runs(effects) == [("h", 1)]
    assert c.slots.free(False) == 1 and c.counters.handed_off == 1  # the held slot runs it
    (t,) = requests_of(take(c), Take)
    assert t.confirmed == ("h", f"{W}#1")


def test_a_record_returned_again_is_not_run_twice_and_a_refused_one_never() -> None:
    c = make(concurrency=3, prefetch=0)
    drained(c)
    answer(c, take(c), take=[0, record("h"), 1])
    effects = answer(c, take(c), take=[0, record("h"), 1, record("g", dlv=2), 0])
    assert runs(effects) == []
    assert [(e.call.value, e.task_ids) for e in effects if isinstance(e, Fenced)] == [("start", ("g",))]
    assert c.counters.handed_off == 1


def test_a_lost_take_keeps_its_slots_and_confirmation_and_the_next_one_does_not_wait() -> None:
    c = make(concurrency=3, prefetch=0)
    drained(c)
    answer(c, take(c), take=[0, record("h"), 1])
    ex = take(c)
    c.on_failure(ex.xid, FailureKind.UNAVAILABLE, now=0.0)
    # what it may have started comes back into its slot: nobody else may fill it meanwhile
    assert c.slots.free(False) == 1 and c.slots.held_for_take == 1
    c.on_work_arrived()
    (dq,) = requests_of(c.next_exchange(), Dequeue)
    assert (dq.start_now, dq.held) == (1, 1)
    again = take(c)
    (t,) = requests_of(again, Take)
    assert t.confirmed == ("h", f"{W}#1")  # the lost one may have run: same answer again
    assert (t.wait_s, t.room) == (0, 1)  # nothing new moves beside what it started
    assert c.slots.held_for_take == 1  # the same slot, not a second one
    assert runs(answer(c, again, take=[0, record("g"), 1])) == [("g", 1)]
    assert c.slots.held_for_take == 0


def test_a_take_that_left_hand_offs_in_the_inbox_makes_room_for_them_next_time() -> None:
    c = make(concurrency=4, prefetch=0)
    drained(c)
    answer(c, take(c), take=[5, record("a"), 1])  # a burst: five more wait in the inbox
    (t,) = requests_of(take(c), Take)
    assert t.room == 3 and c.slots.free(False) == 0  # as many as the free slots allow
    c2 = make(concurrency=4, prefetch=0)
    drained(c2)
    answer(c2, take(c2), take=[1, record("a"), 1])
    (t,) = requests_of(take(c2), Take)
    assert t.room == 2


def test_a_held_slot_wanted_elsewhere_is_woken_once() -> None:
    c = make(concurrency=2, prefetch=2)
    drained(c)
    take(c)
    assert c.holds_to_end() == []
    c.on_work_arrived()  # a burst landed in pending: the dequeue fills the free slot, reserves more
    answer(c, c.next_exchange(), dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)))  # type: ignore[arg-type]
    assert c.holds_to_end() == ["q"]
    assert c.holds_to_end() == []
    c2 = make(concurrency=2, prefetch=0)
    drained(c2)
    take(c2)
    c2.stop(now=0.0)
    assert c2.holds_to_end() == ["q"]


def test_a_one_slot_worker_offers_its_held_slot_and_starts_nothing_else_meanwhile() -> None:
    """Without prefetch, the slot a take holds is still room for a lease: a task that comes by
    another way than a hand-off (one falling due, a grouped one) is leased reserved, never
    started beside the take, and the take is ended so that it starts. (Before, such a worker
    leased nothing until its take came back: up to a whole wait late.)"""
    c = make(concurrency=1, prefetch=0)
    drained(c)
    waiting = take(c)
    c.on_work_arrived()
    ex = c.next_exchange()
    assert ex is not None
    (dq,) = requests_of(ex, Dequeue)
    assert (dq.max_tasks, dq.start_now, dq.held) == (1, 0, 1)  # offers the held slot, starts nothing
    assert c.take_exchange("q", 1.0) is None
    answer(c, ex, dequeue=dequeued(task("d", reserved=True)))
    assert not c.running and c.holds_to_end() == ["q"]
    assert runs(answer(c, waiting, take=[])) == []  # woken, it came back empty: the slot is free
    (start,) = requests_of(c.next_exchange(), Start)
    assert [j.id for j in start.jobs] == ["d"]


def test_a_take_without_the_wait_holds_no_slot_and_waits_for_one_in_flight() -> None:
    c = make(concurrency=1, prefetch=0)
    drained(c)
    in_flight = take(c)
    assert c.take_leftovers("q") is None  # the take in flight answers for what is left
    answer(c, in_flight, take=[])
    ex = c.take_leftovers("q")
    assert ex is not None
    (t,) = requests_of(ex, Take)
    assert t.wait_s == 0 and c.slots.held_for_take == 0
    assert runs(answer(c, ex, take=[0, record("h"), 1])) == [("h", 1)]
    assert c.slots.held_for_take == 0


def test_a_take_the_round_in_flight_decides_waits_for_its_reply_not_a_plain_pop() -> None:
    """An idle worker's poll promises its free slots to the round in flight; the inbox loop,
    planning then, waits for the round's reply (a millisecond) instead of popping plainly for a
    whole wait. On a loaded machine the poll (0.5 s) and the wait (1 s) fell into step, and no
    take was sent for as long as they stayed in step (CI: over 10 s)."""
    c = make(concurrency=2, prefetch=0)
    assert c.take_exchange("q", 1.0) is None and c.take_awaits_round("q")  # not known drained yet
    drained(c)
    c.on_idle_poll()
    ex = c.next_exchange()
    assert ex is not None and requests_of(ex, Dequeue)[0].start_now == 2  # both slots promised
    assert c.take_exchange("q", 1.0) is None
    assert c.take_awaits_round("q")
    answer(c, ex, dequeue=[0])
    assert not c.take_awaits_round("q")
    assert take(c) is not None


def test_a_take_awaits_no_round_that_could_not_give_it_a_slot() -> None:
    busy = make(concurrency=1, prefetch=1)
    drained(busy, dequeued(task("a", reserved=False)))  # the only slot runs a
    assert not busy.take_awaits_round("q")
    stopping = make(concurrency=2, prefetch=0)
    drained(stopping)
    stopping.stop(0.0)
    assert not stopping.take_awaits_round("q")
    in_flight = make(concurrency=2, prefetch=0)
    drained(in_flight)
    take(in_flight)
    assert not in_flight.take_awaits_round("q")  # its take answers for it
    off = make(concurrency=2, prefetch=0)
    off.disable_take()
    assert not off.take_awaits_round("q")
