"""More decisions of the worker's core (``engine.worker.core``), driven by canned replies: no
Valkey, no asyncio, no clock. Each test pins down a decision that a mutant of the core changed
without ``tests/pure/test_worker_core.py`` noticing (docs/testing.md, "Mutation score"): when
the worker asks Redis for work, which requests an exchange carries and with what, what a lost or
failed exchange keeps, and what a stopping worker no longer does."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from engine.worker.core import (
    Ack,
    CoreConfig,
    Defer,
    Dequeue,
    Exchange,
    Extend,
    Fail,
    FailMode,
    FailureKind,
    Fenced,
    FencedCall,
    GiveUp,
    Outcome,
    Progress,
    Release,
    ReleaseDependents,
    Request,
    Start,
    StopHandler,
    StopReason,
    WorkerCore,
)
from tests.pure.test_worker_core import (
    W,
    _job_reserved,
    answer,
    dequeued,
    done,
    make,
    requests_of,
    runs,
    task,
)


def exchange(c: WorkerCore) -> Exchange:
    ex = c.next_exchange()
    assert ex is not None
    return ex


def started(*ids: str) -> list[Any]:
    """A dequeue reply whose tasks the script started (charged attempt 1)."""
    return dequeued(*(task(i, reserved=False) for i in ids))


# ---------------------------------------------------------------------------------- when to fetch


def test_a_new_worker_asks_for_work_at_once_and_a_stopping_one_never() -> None:
    c = make(concurrency=1, prefetch=0)  # room for exactly one task
    assert c.wants_exchange()  # no waiting for the first poll interval
    c.stop(now=0.0)
    assert not c.wants_exchange() and not c.finished  # (until the drain closes the intake)
    c.close_intake()
    assert c.finished


def test_an_idle_poll_or_a_wake_up_makes_a_worker_with_room_look_again() -> None:
    c = make(concurrency=2, prefetch=0)
    answer(c, exchange(c), dequeue=started("a"))  # one of two: nothing more waits
    assert not c.wants_exchange()
    c.on_idle_poll()
    assert c.wants_exchange()
    answer(c, exchange(c))  # found nothing
    assert not c.wants_exchange()
    c.on_work_arrived()
    assert c.wants_exchange()


def test_a_wake_up_landing_during_a_round_trip_fetches_again_after_it_every_time() -> None:
    """Its task may have been enqueued after the dequeue ran: the empty answer is not the end."""
    c = make(concurrency=2, prefetch=0)
    for _ in range(3):
        ex = exchange(c)
        c.on_work_arrived()
        answer(c, ex)  # the dequeue found nothing
        assert c.wants_exchange()
    answer(c, exchange(c))
    assert not c.wants_exchange()  # no wake-up this time: wait for the poll


def test_a_full_fetch_asks_again_at_once_once_there_is_room_and_a_heartbeat_does_not_end_it() -> None:
    c = make(concurrency=2, prefetch=0)
    answer(c, exchange(c), dequeue=started("a"))
    c.on_idle_poll()
    ex = exchange(c)
    assert requests_of(ex, Dequeue)[0].max_tasks == 1
    beat = c.extend_exchange()  # the heartbeat runs alongside; its reply comes first
    assert beat is not None
    assert answer(c, beat, extend=[["a"], []])[-1] == StopHandler("a", f"{W}#1", StopReason.LEASE_LOST)
    assert done(c, "a", Outcome.STALE) is Outcome.STALE  # someone else owns a's outcome now
    assert c.unsent == 0  # nothing recorded for it
    assert runs(answer(c, ex, dequeue=started("b"))) == [("b", 1)]  # got all it asked for
    assert c.wants_exchange()  # more may be waiting, and a's slot is free


def test_outcomes_want_an_exchange_even_when_there_is_nothing_to_fetch() -> None:
    for outcome in (Outcome.COMPLETED, Outcome.RETRY):
        c = make(concurrency=2, prefetch=0)
        answer(c, exchange(c), dequeue=started("a"))
        assert not c.wants_exchange()
        done(c, "a", outcome, error="boom")
        assert c.wants_exchange()


def test_a_reserved_task_and_a_free_slot_want_an_exchange_with_no_room_to_fetch() -> None:
    c = make(concurrency=1, prefetch=0)
    answer(c, exchange(c), dequeue=started("a"))
    assert c.on_handoff(_job_reserved("h")) is None  # no free slot: it waits
    beat = c.extend_exchange()
    assert beat is not None
    answer(c, beat, extend=[["a"], []])
    done(c, "a", Outcome.STALE)
    assert c.slots.capacity == 0 and c.wants_exchange()  # h takes a's slot
    ex = exchange(c)
    assert [j.id for s in requests_of(ex, Start) for j in s.jobs] == ["h"] and not requests_of(ex, Dequeue)


def test_a_worker_without_hand_off_never_registers_for_it() -> None:
    assert not make(handoff_ms=0).handoff_enabled
    assert requests_of(exchange(make(handoff_ms=0)), Dequeue)[0].handoff_ms == 0
    assert requests_of(exchange(make(handoff_ms=1)), Dequeue)[0].handoff_ms == 1
    c = make(handoff_ms=2000)
    c.disable_handoff()  # its user may not pop an inbox (an older ACL)
    assert not c.handoff_enabled and requests_of(exchange(c), Dequeue)[0].handoff_ms == 0


# ---------------------------------------------------------------------------------- weights


def _weighted(seed: int) -> WorkerCore:
    config = CoreConfig(W, ("a", "b", "c"), 1, 0, 30_000, 0, weights={"a": 6, "b": 3})
    return WorkerCore(config, rng=random.Random(seed))


def _round_order(c: WorkerCore) -> list[str]:
    order: list[str] = []
    ex = c.next_exchange()
    while ex is not None:
        order.append(requests_of(ex, Dequeue)[0].queue)
        answer(c, ex)  # each found nothing: the next queue is asked
        ex = c.next_exchange() if len(order) < 3 else None
    return order


def test_weighted_queues_come_first_in_proportion_to_their_weight() -> None:
    """``c`` has no weight: it counts as 1. Seeded, so the figures are the same every run."""
    c = _weighted(7)
    orders = [_round_order(c) for _ in range(3000)]
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)  # every queue asked once a round
    first = Counter(o[0] for o in orders)
    assert abs(first["a"] / 3000 - 0.6) < 0.03
    assert abs(first["b"] / 3000 - 0.3) < 0.03
    assert abs(first["c"] / 3000 - 0.1) < 0.03
    # the random source is the one given: the same seed, the same orders
    assert [_round_order(_weighted(1)) for _ in range(30)] == [_round_order(_weighted(1)) for _ in range(30)]


# ---------------------------------------------------------------------------------- what is sent


def test_every_request_and_exchange_has_its_own_id() -> None:
    """Replies are matched to requests by id: ids must never repeat, whatever the kind."""
    c = make(concurrency=4, prefetch=1)
    seen: list[Exchange] = []

    def keep(ex: Exchange | None) -> Exchange:
        assert ex is not None
        seen.append(ex)
        return ex

    answer(
        c,
        keep(c.next_exchange()),
        dequeue=dequeued(*(task(i, reserved=False) for i in "abce"), task("d", reserved=True)),
    )
    c.report_progress(c.running["e"], 10.0, "")
    done(c, "a")
    done(c, "b", Outcome.RETRY, error="x")
    c.defer_unknown(c.running["c"], 1.0, 60.0, "note", "error")
    answer(c, keep(c.next_exchange()))  # progress, ack, fail, defer, start, dequeue
    keep(c.on_handoff(_job_reserved("h")))
    keep(c.extend_exchange())
    c.report_progress(c.running["e"], 20.0, "")
    keep(c.progress_exchange())
    c.on_idle_poll()
    lost = keep(c.next_exchange())
    c.on_failure(lost.xid, FailureKind.UNAVAILABLE, now=0.0)
    c.stop(now=1.0)
    keep(c.next_exchange())  # the lost dequeue sent again
    keep(c.release_exchange(list(c.running.values()), "shutdown"))
    kinds = {type(r) for ex in seen for r in ex.requests}
    assert kinds == {Ack, Fail, Defer, Progress, Start, Dequeue, Extend, Release}
    requests: dict[int, Request] = {id(r): r for ex in seen for r in ex.requests}  # a resent one once
    rids = [r.rid for r in requests.values()]
    xids = [ex.xid for ex in seen]
    assert all(isinstance(i, int) for i in rids + xids)
    assert len(set(rids)) == len(rids) and len(set(xids)) == len(xids)


def test_two_exchanges_in_flight_each_get_their_own_reply() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("a"))
    c.on_idle_poll()
    round_ = exchange(c)
    beat = c.extend_exchange()
    assert beat is not None
    assert answer(c, beat, extend=[[], ["a"]]) == [StopHandler("a", f"{W}#1", StopReason.CANCEL_REQUESTED)]
    assert runs(answer(c, round_, dequeue=started("b"))) == [("b", 1)]


def test_each_dequeue_has_a_new_request_id_unless_its_reply_was_lost() -> None:
    c = make()
    first = exchange(c)
    dq1 = requests_of(first, Dequeue)[0]
    assert dq1.lease_ms == 30_000
    answer(c, first)
    c.on_idle_poll()
    dq2 = requests_of(exchange(c), Dequeue)[0]
    assert dq2.request_id != dq1.request_id  # an old id would get the old receipt back


def test_the_dequeue_starts_only_what_the_free_slots_leave_after_the_reserved() -> None:
    c = make(concurrency=3, prefetch=1)
    answer(c, exchange(c), dequeue=dequeued(task("a", reserved=False), task("r", reserved=True)))
    done(c, "a")
    ex = exchange(c)  # three free slots: one for r, two for the dequeue
    assert [(s.queue, [j.id for j in s.jobs]) for s in requests_of(ex, Start)] == [("q", ["r"])]
    assert requests_of(ex, Dequeue)[0].start_now == 2
    c2 = make(concurrency=1, prefetch=1)
    answer(c2, exchange(c2), dequeue=started("a"))
    c2.on_idle_poll()
    dq = requests_of(exchange(c2), Dequeue)[0]  # the slot is taken: lease one, start none
    assert (dq.max_tasks, dq.start_now) == (1, 0)


def test_lower_queues_are_asked_for_what_all_the_higher_ones_left() -> None:
    c = make(concurrency=2, prefetch=1, queues=("hi", "mid", "lo"))
    ex = exchange(c)
    assert requests_of(ex, Dequeue)[0].max_tasks == 3
    answer(c, ex, dequeue=started("h"))
    ex = exchange(c)
    assert requests_of(ex, Dequeue)[0].max_tasks == 2
    answer(c, ex, dequeue=started("m"))
    assert requests_of(exchange(c), Dequeue)[0].max_tasks == 1  # 3 minus one from each


def test_progress_reports_keep_the_latest_and_never_go_back() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("a", "b"))
    ja, jb = c.running["a"], c.running["b"]
    assert c.report_progress(ja, 10.0, "ten") is True  # the first waiting: schedule a send
    assert c.report_progress(jb, 5.0, "") is False  # a send is already scheduled
    assert c.report_progress(ja, 10.0, "same, new words") is False  # same percent: newer words
    assert c.report_progress(ja, 5.0, "back") is False  # lower within the attempt: dropped
    ex = c.progress_exchange()
    assert ex is not None
    assert {(p.queue, p.task_id, p.token, p.percent, p.message) for p in requests_of(ex, Progress)} == {
        ("q", "a", f"{W}#1", 10.0, "same, new words"),
        ("q", "b", f"{W}#1", 5.0, ""),
    }
    assert c.progress_exchange() is None  # sent: nothing waits
    assert c.report_progress(ja, 20.0, "") is True  # the first one waiting again


def test_a_heartbeat_extends_what_is_held_by_the_configured_lease() -> None:
    c = make()
    assert c.extend_exchange() is None  # nothing held: no heartbeat call
    answer(c, exchange(c), dequeue=started("a"))
    snapshot = c.held()
    done(c, "a")
    beat = c.extend_exchange(snapshot)  # the snapshot it is given, not what is held by now
    (extend,) = requests_of(beat, Extend)
    assert (extend.queue, extend.held, extend.lease_ms) == ("q", (("a", f"{W}#1"),), 30_000)


def test_a_release_names_each_delivery_and_reports_the_refused() -> None:
    c = make(concurrency=1, prefetch=2)
    answer(c, exchange(c), dequeue=dequeued(task("a", reserved=True), task("b", reserved=True, dlv=2)))
    assert c.release_exchange([], "shutdown") is None
    ex = c.release_exchange(c.slots.take_all_reserved(), "shutdown")
    assert ex is not None
    assert [(r.queue, r.held, r.note) for r in requests_of(ex, Release)] == [
        ("q", (("a", f"{W}#1"), ("b", f"{W}#2")), "shutdown")
    ]
    assert answer(c, ex, release=["b"]) == [Fenced("q", FencedCall.RELEASE, ("b",))]


def test_a_deferred_task_goes_back_with_its_note_and_error() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("u"))
    c.defer_unknown(c.running["u"], 5.0, 3600.0, "no handler here", "E010: unknown type")
    (defer,) = requests_of(exchange(c), Defer)
    assert (defer.queue, defer.task_id, defer.token, defer.note, defer.error) == (
        "q",
        "u",
        f"{W}#1",
        "no handler here",
        "E010: unknown type",
    )


# ---------------------------------------------------------------------------------- outcomes


def test_counters_and_the_handlers_traceback_are_kept() -> None:
    c = make(concurrency=4)
    answer(c, exchange(c), dequeue=started("a", "b", "c", "d"))
    done(c, "a")
    done(c, "b")
    done(c, "c", Outcome.RETRY, error="boom", traceback="Traceback: boom")
    done(c, "d", Outcome.TIMEOUT, error="E004")
    assert (c.counters.processed, c.counters.failed) == (2, 2)
    fails = requests_of(exchange(c), Fail)
    assert [(f.task_id, f.traceback) for f in fails] == [("c", "Traceback: boom"), ("d", "")]


def test_a_cancel_replaces_the_handlers_own_failure() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("a"))
    beat = c.extend_exchange()
    assert beat is not None
    answer(c, beat, extend=[[], ["a"]])
    assert done(c, "a", Outcome.RETRY, error="boom", traceback="tb") is Outcome.CANCELLED
    (fail,) = requests_of(exchange(c), Fail)
    assert (fail.error, fail.traceback, fail.mode) == ("cancelled while running", "", FailMode.CANCEL)


def test_a_cancelled_task_requeued_and_delivered_again_runs_as_any_other() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("a"))
    beat = c.extend_exchange()
    assert beat is not None
    answer(c, beat, extend=[[], ["a"]])
    done(c, "a", Outcome.CANCELLED)
    effects = answer(c, exchange(c), fail="cancelled")
    assert ReleaseDependents(()) in effects  # its dependents are told at once
    # an operator requeues it; this worker gets its next delivery
    c.on_idle_poll()
    answer(c, exchange(c), dequeue=dequeued(task("a", reserved=False, dlv=2)))
    assert done(c, "a") is Outcome.COMPLETED
    answer(c, exchange(c), dequeue=dequeued(task("a", reserved=False, dlv=3)))
    beat = c.extend_exchange()
    assert beat is not None
    assert answer(c, beat, extend=[[], ["a"]]) == [StopHandler("a", f"{W}#3", StopReason.CANCEL_REQUESTED)]


def test_a_stopping_worker_records_failures_but_not_the_handlers_the_drain_cancelled() -> None:
    c = make(concurrency=2)
    answer(c, exchange(c), dequeue=started("a", "b"))
    c.stop(now=0.0)
    assert done(c, "a", Outcome.CANCELLED) is Outcome.CANCELLED  # no operator asked: the lease returns it
    assert done(c, "b", Outcome.RETRY, error="boom") is Outcome.RETRY
    assert [f.task_id for f in requests_of(exchange(c), Fail)] == ["b"]


def test_a_stopping_worker_starts_no_reserved_task() -> None:
    c = make(concurrency=2, prefetch=1)
    answer(c, exchange(c), dequeue=dequeued(task("a", reserved=False), task("r", reserved=True)))
    c.stop(now=0.0)
    done(c, "a")
    ex = exchange(c)
    assert requests_of(ex, Ack) and not requests_of(ex, Start) and not requests_of(ex, Dequeue)
    assert [b.job.id for b in c.slots.buffer] == ["r"]  # released at the drain


def test_a_stopping_worker_finishing_a_round_starts_nothing_from_the_later_queue() -> None:
    c = make(queues=("hi", "lo"))
    answer(c, exchange(c))  # hi had nothing
    c.stop(now=0.0)
    assert requests_of(exchange(c), Dequeue)[0].start_now == 0


# ---------------------------------------------------------------------------------- hand-offs


def test_hand_offs_in_flight_hold_their_slots() -> None:
    c = make(concurrency=2, prefetch=0)
    first = c.on_handoff(_job_reserved("h1"))
    assert first is not None and [(s.queue, s.jobs[0].id) for s in requests_of(first, Start)] == [("q", "h1")]
    assert c.on_handoff(_job_reserved("h2")) is not None
    assert c.on_handoff(_job_reserved("h3")) is None  # both slots wait for a start mark


def test_a_hand_off_takes_a_slot_freed_after_a_round_trip_ended_or_failed() -> None:
    c = make(concurrency=1, prefetch=0)
    answer(c, exchange(c))  # it promised its one slot; the reply brought nothing
    assert c.on_handoff(_job_reserved("h")) is not None
    c2 = make(concurrency=1, prefetch=0)
    c2.on_failure(exchange(c2).xid, FailureKind.UNAVAILABLE, now=0.0)
    assert c2.on_handoff(_job_reserved("h")) is not None


def test_a_hand_off_takes_a_slot_freed_while_an_exchange_fills_the_others() -> None:
    c = make(concurrency=2, prefetch=0)
    answer(c, exchange(c), dequeue=started("a", "b"))
    assert c.on_handoff(_job_reserved("h1")) is None
    done(c, "a")
    ex = exchange(c)  # a's ack and h1's start; no room to fetch
    assert requests_of(ex, Start) and not requests_of(ex, Dequeue)
    done(c, "b")  # b's slot frees while that exchange is in flight
    assert c.on_handoff(_job_reserved("h2")) is not None


# ---------------------------------------------------------------------------------- failures


def test_an_exchange_lost_keeps_its_outcomes_ahead_of_those_made_meanwhile() -> None:
    c = make(concurrency=7)
    answer(c, exchange(c), dequeue=started("a", "b", "c", "d", "e", "f", "g"))
    done(c, "a")
    done(c, "b", Outcome.RETRY, error="b")
    c.report_progress(c.running["c"], 10.0, "")
    c.report_progress(c.running["f"], 30.0, "")
    c.report_progress(c.running["g"], 40.0, "")
    lost = exchange(c)
    done(c, "d")  # while it is in flight
    done(c, "e", Outcome.RETRY, error="e")
    c.report_progress(c.running["c"], 20.0, "")
    assert c.on_failure(lost.xid, FailureKind.UNAVAILABLE, now=0.0) == []
    again = exchange(c)
    assert [t for a in requests_of(again, Ack) for t, _, _ in a.done] == ["a", "d"]
    assert [f.task_id for f in requests_of(again, Fail)] == ["b", "e"]
    assert sorted((p.task_id, p.percent) for p in requests_of(again, Progress)) == [
        ("c", 20.0),
        ("f", 30.0),
        ("g", 40.0),
    ]


def test_a_call_that_failed_is_not_sent_again() -> None:
    """A script error on one call: the batch's other calls ran; resending would repeat them."""
    c = make()
    answer(c, exchange(c), dequeue=started("a"))
    done(c, "a")
    ex = exchange(c)
    dq = requests_of(ex, Dequeue)[0]
    assert c.on_failure(ex.xid, FailureKind.CALL_FAILED, now=0.0) == []
    again = exchange(c)
    assert not requests_of(again, Ack) and requests_of(again, Dequeue)[0].request_id != dq.request_id


def test_a_dequeue_reply_after_a_heartbeats_call_failed_is_still_taken() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("a"))
    c.on_idle_poll()
    ex = exchange(c)
    beat = c.extend_exchange()
    assert beat is not None
    c.on_failure(beat.xid, FailureKind.CALL_FAILED, now=0.0)
    assert runs(answer(c, ex, dequeue=started("b"))) == [("b", 1)]


def test_after_a_lost_first_round_trip_the_worker_asks_again_at_once() -> None:
    c = make()
    c.on_failure(exchange(c).xid, FailureKind.UNAVAILABLE, now=0.0)
    assert c.wants_exchange()


def test_a_later_queues_lost_dequeue_ends_the_round_until_the_next_poll() -> None:
    c = make(queues=("hi", "lo"))
    answer(c, exchange(c))  # hi had nothing
    follow = exchange(c)
    lo = requests_of(follow, Dequeue)[0]
    assert lo.queue == "lo"
    assert c.on_failure(follow.xid, FailureKind.UNAVAILABLE, now=0.0) == []
    assert not c.wants_exchange()  # nothing came back full, no wake-up: no hot loop on a down server
    c.on_idle_poll()
    answer(c, exchange(c))
    assert requests_of(exchange(c), Dequeue)[0].request_id == lo.request_id  # its receipt


def test_stopping_gives_up_only_after_grace_plus_flush_not_at_it() -> None:
    c = make()
    answer(c, exchange(c), dequeue=started("a"))
    done(c, "a")
    c.stop(now=100.0)  # grace 30 s + flush 10 s
    for now in (130.0, 140.0):
        assert c.on_failure(exchange(c).xid, FailureKind.UNAVAILABLE, now=now) == []
    assert c.on_failure(exchange(c).xid, FailureKind.UNAVAILABLE, now=140.5) == [GiveUp(1)]


def test_the_stopping_worker_resends_a_lost_dequeue_to_lease_and_start_nothing() -> None:
    c = make()
    first = exchange(c)
    dq = requests_of(first, Dequeue)[0]
    c.on_failure(first.xid, FailureKind.UNAVAILABLE, now=0.0)
    c.stop(now=1.0)
    (resent,) = requests_of(exchange(c), Dequeue)
    assert (resent.queue, resent.max_tasks, resent.lease_ms, resent.start_now, resent.handoff_ms) == (
        "q",
        0,
        30_000,
        0,
        0,
    )
    assert resent.request_id == dq.request_id


def test_a_worker_holds_work_while_anything_runs_waits_or_is_unsent() -> None:
    """What ``--burst`` waits for (a property: mutmut does not mutate it, so each part is here)."""
    c = make(concurrency=1, prefetch=1)
    assert not c.holds_work
    handoff = c.on_handoff(_job_reserved("h"))  # its start mark in flight
    assert handoff is not None and c.holds_work
    answer(c, handoff, start=["h", 0])  # refused: nothing held any more
    assert not c.holds_work
    answer(c, exchange(c), dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)))
    beat = c.extend_exchange()
    assert beat is not None
    answer(c, beat, extend=[["a"], []])
    done(c, "a", Outcome.STALE)
    assert not c.running and c.slots.buffer and c.holds_work  # b, reserved
    answer(c, exchange(c), start=["b", 1])
    assert list(c.running) == ["b"] and not c.slots.buffer and not c.unsent and c.holds_work
    done(c, "b", Outcome.RETRY, error="boom")
    assert not c.running and not c.slots.buffer and c.holds_work  # its failure, unsent
    answer(c, exchange(c))
    assert not c.holds_work
    answer(c, exchange(c), dequeue=started("c"))
    done(c, "c")
    assert not c.running and c.holds_work  # its ack, unsent


# ------------------------------------------------------------------------ maintenance on a timer


def test_maintenance_rides_on_the_first_dequeue_then_only_when_due() -> None:
    c = make()
    maintained = []
    for due in (False, False, True):
        if due:
            c.on_maintenance_due()
        c.on_work_arrived()
        ex = exchange(c)
        (dq,) = requests_of(ex, Dequeue)
        maintained.append(dq.maintain)
        answer(c, ex, dequeue=[0])
    # a worker's first round promotes and recovers; the hot path then skips the three scans
    assert maintained == [True, False, True]


def test_a_scan_that_filled_its_limit_or_a_lost_reply_keeps_maintenance_due() -> None:
    c = make()
    c.on_failure(exchange(c).xid, FailureKind.UNAVAILABLE, 0.0)  # no reply: the scans may not have run
    c.on_work_arrived()
    again = exchange(c)
    (dq,) = requests_of(again, Dequeue)
    assert dq.maintain
    answer(c, again, dequeue=["more"])  # more may be due than the limit took
    c.on_work_arrived()
    (dq,) = requests_of(c.next_exchange(), Dequeue)
    assert dq.maintain
