"""The worker's exchange state machine (``engine.worker.core``) driven by canned replies: no
Valkey, no asyncio, no clock. The real-server tests (tests/engine, tests/chaos) run the same
core through the driver against the real scripts; these pin down each decision it makes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.worker import core
from engine.worker.core import (
    Ack,
    CoreConfig,
    Defer,
    Dequeue,
    Exchange,
    ExchangeKind,
    Extend,
    Fail,
    FailMode,
    FailureKind,
    Fenced,
    FencedCall,
    GiveUp,
    HandlerDone,
    Outcome,
    Progress,
    Release,
    ReleaseDependents,
    RunHandler,
    Start,
    StopHandler,
    StopReason,
    WorkerCore,
)
from engine.worker.protocol import JOB_WIDTH

W = "host:1:abc"


def make(
    concurrency: int = 2, prefetch: int = 2, queues: tuple[str, ...] = ("q",), handoff_ms: int = 2000
) -> WorkerCore:
    return WorkerCore(
        CoreConfig(
            worker_id=W,
            queues=queues,
            concurrency=concurrency,
            prefetch=prefetch,
            lease_ms=30_000,
            handoff_ms=handoff_ms,
            grace_s=30.0,
            stop_flush_s=10.0,
        ),
        rng=random.Random(1),
    )


def task(
    task_id: str, *, reserved: bool, attempt: int | None = None, dlv: int = 1, max_retry: int = 3
) -> list[Any]:
    """One task's fields in a dequeue reply, as the script sends them."""
    if attempt is None:
        attempt = 0 if reserved else 1
    fields = [
        task_id,
        "t",
        "{}",
        "0",
        str(max_retry),
        "60000",
        str(attempt),
        "",
        "1",
        "1" if reserved else "0",
        f"{W}#{dlv}",
    ]
    assert len(fields) == JOB_WIDTH
    return fields


def dequeued(*tasks: list[Any]) -> list[Any]:
    return [0, *(x for t in tasks for x in t)]


def requests_of(exchange: Exchange | None, kind: type) -> list[Any]:
    assert exchange is not None
    return [r for r in exchange.requests if isinstance(r, kind)]


def answer(c: WorkerCore, exchange: Exchange, **by_kind: Any) -> list[core.Effect]:
    """Reply to every request of ``exchange``; ``by_kind`` maps a request class name (lower
    case) to its reply, or to a function of the request. The replies are handed over in
    reverse order: the core matches them by request id, never by position."""
    defaults: dict[str, Any] = {
        "ack": [[], []],
        "fail": "retry",
        "defer": "deferred",
        "throttle": "throttled",
        "start": lambda r: [x for j in r.jobs for x in (j.id, j.attempt + 1)],
        "dequeue": [0],
        "extend": [[], []],
        "release": [],
        "progress": 50.0,
        "take": [],
    }
    replies = {}
    for request in reversed(exchange.requests):
        reply = by_kind.get(type(request).__name__.lower(), defaults[type(request).__name__.lower()])
        replies[request.rid] = reply(request) if callable(reply) else reply
    return c.on_reply(exchange.xid, replies)


def runs(effects: list[core.Effect]) -> list[tuple[str, int]]:
    return [(e.job.id, e.job.attempt) for e in effects if isinstance(e, RunHandler)]


def done(c: WorkerCore, task_id: str, outcome: Outcome = Outcome.COMPLETED, **kw: Any) -> Outcome:
    return c.on_outcome(HandlerDone(c.running[task_id], outcome, **kw))


# ---------------------------------------------------------------------------------- the hot path


def test_delivery_start_and_ack_of_a_started_and_a_prefetched_task() -> None:
    c = make(concurrency=1, prefetch=1)
    first = c.next_exchange()
    (dq,) = requests_of(first, Dequeue)
    assert (dq.queue, dq.max_tasks, dq.start_now, dq.handoff_ms) == ("q", 2, 1, 2000)
    assert first is not None and first.kind is ExchangeKind.ROUND
    # the script started 'a' (charged attempt 1) and reserved 'b' for when a slot frees
    effects = answer(c, first, dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)))
    assert runs(effects) == [("a", 1)]
    assert list(c.running) == ["a"] and [b.job.id for b in c.slots.buffer] == ["b"]
    assert not c.wants_exchange()  # full: nothing to send, nothing to fetch

    assert done(c, "a") is Outcome.COMPLETED
    second = c.next_exchange()
    (ack,) = requests_of(second, Ack)
    assert ack.done == (("a", f"{W}#1", ""),)
    (start,) = requests_of(second, Start)
    assert [j.id for j in start.jobs] == ["b"] and start.jobs[0].token == f"{W}#1"
    assert second is not None
    effects = answer(c, second)
    assert runs(effects) == [("b", 1)]  # run only once Redis charged the attempt
    assert c.counters.processed == 1


def test_a_handlers_failure_is_sent_for_retry_and_dead_once_attempts_are_spent() -> None:
    c = make()
    answer(c, c.next_exchange() or pytest.fail(), dequeue=dequeued(task("a", reserved=False, max_retry=1)))
    assert done(c, "a", Outcome.RETRY, error="boom", traceback="tb", delay_s=2.0) is Outcome.RETRY
    (fail,) = requests_of(c.next_exchange(), Fail)
    assert (fail.task_id, fail.token, fail.error, fail.delay_s, fail.mode) == (
        "a",
        f"{W}#1",
        "boom",
        2.0,
        FailMode.RETRY,
    )
    assert c.counters.failed == 1
    # the last attempt: recorded as dead (the script decides the same from the attempts charged)
    c2 = make()
    answer(
        c2,
        c2.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("z", reserved=False, attempt=2, max_retry=1)),
    )
    assert done(c2, "z", Outcome.RETRY, error="boom") is Outcome.DEAD
    # a permanent failure keeps its mode; a dead reply asks for the dependency outboxes
    c3 = make()
    answer(c3, c3.next_exchange() or pytest.fail(), dequeue=dequeued(task("p", reserved=False)))
    done(c3, "p", Outcome.DEAD, error="E002: bad payload", mode=FailMode.PERMANENT)
    ex = c3.next_exchange()
    assert requests_of(ex, Fail)[0].mode is FailMode.PERMANENT
    assert ex is not None and any(isinstance(e, ReleaseDependents) for e in answer(c3, ex, fail="dead"))


def test_acks_with_dependents_ask_for_their_release() -> None:
    c = make()
    answer(c, c.next_exchange() or pytest.fail(), dequeue=dequeued(task("a", reserved=False)))
    done(c, "a")
    effects = answer(c, c.next_exchange() or pytest.fail(), ack=[[], ["a"]])
    assert ReleaseDependents((("q", ("a",)),)) in effects


# ---------------------------------------------------------------------------------- recovery


def test_a_lost_start_reply_then_a_heartbeat_does_not_drop_the_task() -> None:
    """Issue 14's "task dropped unrun": the start mark ran but its reply was lost, then a
    heartbeat came. The task goes back to the buffer under the same delivery token, the
    heartbeat extends that delivery (not "lost"), and the start sent again gets Redis's first
    answer, so the handler runs, as attempt 1, exactly once."""
    c = make(concurrency=1, prefetch=1)
    answer(
        c,
        c.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)),
    )
    done(c, "a")
    second = c.next_exchange()
    (start,) = requests_of(second, Start)
    assert second is not None
    assert c.on_failure(second.xid, FailureKind.UNAVAILABLE, now=0.0) == []  # reply lost
    assert [b.job.id for b in c.slots.buffer] == ["b"] and not c.running
    beat = c.extend_exchange()
    (extend,) = requests_of(beat, Extend)
    assert extend.held == (("b", f"{W}#1"),)  # the same delivery the start mark named
    assert beat is not None and answer(c, beat) == []  # Redis holds it started: extended, not lost
    third = c.next_exchange()
    (again,) = requests_of(third, Start)
    assert [(j.id, j.token) for j in again.jobs] == [("b", f"{W}#1")]
    (ack,) = requests_of(third, Ack)  # the ack of 'a' was kept and goes again
    assert ack.done == (("a", f"{W}#1", ""),)
    assert third is not None
    assert runs(answer(c, third, start=["b", 1])) == [("b", 1)]


def test_lost_outcomes_are_sent_again_in_order() -> None:
    c = make()
    answer(
        c,
        c.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("a", reserved=False), task("b", reserved=False)),
    )
    done(c, "a")
    done(c, "b", Outcome.RETRY, error="x")
    c.report_progress(_job("b"), 10.0, "")
    first = c.next_exchange()
    assert first is not None
    c.on_failure(first.xid, FailureKind.UNAVAILABLE, now=0.0)
    again = c.next_exchange()
    assert requests_of(again, Ack)[0].done == requests_of(first, Ack)[0].done
    assert requests_of(again, Fail) == requests_of(first, Fail)  # same request: idempotent per token


def _job(task_id: str) -> Any:
    from engine.worker.protocol import parse_dequeue

    return parse_dequeue("q", dequeued(task(task_id, reserved=False)))[0]


def test_a_lost_dequeue_reply_is_asked_again_under_the_same_request_id() -> None:
    c = make()
    first = c.next_exchange()
    (dq,) = requests_of(first, Dequeue)
    assert first is not None
    c.on_failure(first.xid, FailureKind.UNAVAILABLE, now=0.0)
    (again,) = requests_of(c.next_exchange(), Dequeue)
    assert again.request_id == dq.request_id and again.rid != dq.rid  # the receipt returns its tasks


def test_a_worker_stopping_after_a_lost_dequeue_reply_takes_back_what_it_leased() -> None:
    c = make()
    first = c.next_exchange()
    (dq,) = requests_of(first, Dequeue)
    assert first is not None
    c.on_failure(first.xid, FailureKind.UNAVAILABLE, now=0.0)  # it ran; its reply was lost
    c.stop(now=1.0)
    assert c.wants_exchange() and not c.finished
    again = c.next_exchange()
    (resent,) = requests_of(again, Dequeue)
    assert (resent.request_id, resent.max_tasks, resent.handoff_ms) == (dq.request_id, 0, 0)
    assert again is not None
    effects = answer(c, again, dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)))
    # the started one runs within the grace period; the reserved one is released at the drain
    assert [e.job.id for e in effects if isinstance(e, RunHandler)] == ["a"]
    assert [b.job.id for b in c.slots.buffer] == ["b"]
    assert not c.wants_exchange()


def test_a_lost_lease_stops_only_that_delivery() -> None:
    c = make()
    answer(
        c,
        c.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)),
    )
    beat = c.extend_exchange()
    assert beat is not None
    effects = answer(c, beat, extend=[["a", "b"], []])
    assert StopHandler("a", f"{W}#1", StopReason.LEASE_LOST) in effects
    assert Fenced("q", FencedCall.EXTEND, ("a", "b")) in effects
    assert not c.slots.buffer  # the reserved one is forgotten, never started
    # an answer about an older delivery of a task now running under a new one stops nothing
    c2 = make()
    answer(c2, c2.next_exchange() or pytest.fail(), dequeue=dequeued(task("a", reserved=False, dlv=2)))
    old = Exchange(99, ExchangeKind.HEARTBEAT, (Extend(98, "q", (("a", f"{W}#1"),), 30_000),))
    c2._inflight[old.xid] = old
    effects = c2.on_reply(old.xid, {98: [["a"], []]})
    assert not [e for e in effects if isinstance(e, StopHandler)] and "a" in c2.running


# ---------------------------------------------------------------------------------- fencing


def test_calls_of_a_stale_delivery_are_refused_and_reported_not_applied() -> None:
    c = make(concurrency=1, prefetch=1)
    answer(
        c,
        c.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)),
    )
    done(c, "a")
    ex = c.next_exchange()
    assert ex is not None
    effects = answer(c, ex, ack=[["a"], []], start=["b", 0])
    assert Fenced("q", FencedCall.ACK, ("a",)) in effects
    assert Fenced("q", FencedCall.START, ("b",)) in effects
    assert runs(effects) == [] and not c.running  # a refused start is never run
    c2 = make()
    answer(c2, c2.next_exchange() or pytest.fail(), dequeue=dequeued(task("x", reserved=False)))
    done(c2, "x", Outcome.RETRY, error="late")
    c2.report_progress(_job("x"), 40.0, "")
    ex2 = c2.next_exchange()
    assert ex2 is not None
    effects = answer(c2, ex2, fail="stale", progress=None)
    assert (
        Fenced("q", FencedCall.FAIL, ("x",)) in effects
        and Fenced("q", FencedCall.PROGRESS, ("x",)) in effects
    )


# ---------------------------------------------------------------------------------- the rest


def test_an_unknown_task_type_is_deferred_uncharged_and_frees_its_slot() -> None:
    c = make(concurrency=1, prefetch=0)
    answer(c, c.next_exchange() or pytest.fail(), dequeue=dequeued(task("u", reserved=False)))
    c.defer_unknown(c.running["u"], 5.0, 3600.0, "note", "error")
    assert not c.running
    ex = c.next_exchange()
    (defer,) = requests_of(ex, Defer)
    assert (defer.task_id, defer.token, defer.delay_s, defer.limit_s) == ("u", f"{W}#1", 5.0, 3600.0)
    assert requests_of(ex, Dequeue)[0].start_now == 1  # the slot is free again
    assert c.counters.failed == 0


def test_a_hung_sync_handler_keeps_its_slot_and_its_lease_until_it_returns() -> None:
    """Past its timeout a sync handler's thread runs on: its outcome comes only when it
    returns, and until then its slot stays taken (no start for the next task) and its lease is
    extended; the worker takes less work instead of burying healthy tasks."""
    c = make(concurrency=1, prefetch=1)
    answer(
        c,
        c.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("hung", reserved=False), task("next", reserved=True)),
    )
    assert not c.wants_exchange()
    c.on_idle_poll()
    assert c.next_exchange() is None  # no start for 'next', no room to lease more
    assert c.slots.free(c.stopping) == 0
    beat = c.extend_exchange()
    assert requests_of(beat, Extend)[0].held == (("hung", f"{W}#1"), ("next", f"{W}#1"))
    # it returns at last: its timeout is recorded and the next task starts
    assert done(c, "hung", Outcome.TIMEOUT, error="E004: timed out after 60 s") is Outcome.TIMEOUT
    ex = c.next_exchange()
    assert (
        requests_of(ex, Fail)[0].error.startswith("E004") and requests_of(ex, Start)[0].jobs[0].id == "next"
    )


def test_an_operators_cancel_wins_over_what_the_handler_returned() -> None:
    c = make()
    answer(c, c.next_exchange() or pytest.fail(), dequeue=dequeued(task("a", reserved=False)))
    beat = c.extend_exchange()
    assert beat is not None
    effects = answer(c, beat, extend=[[], ["a"]])
    assert effects == [StopHandler("a", f"{W}#1", StopReason.CANCEL_REQUESTED)]
    beat2 = c.extend_exchange()
    assert beat2 is not None and answer(c, beat2, extend=[[], ["a"]]) == []  # asked once
    assert done(c, "a", Outcome.COMPLETED) is Outcome.CANCELLED  # a sync handler returned anyway
    (fail,) = requests_of(c.next_exchange(), Fail)
    assert fail.mode is FailMode.CANCEL


def test_stop_drains_sends_outcomes_releases_the_reserved_and_gives_up_only_after_grace() -> None:
    c = make(concurrency=1, prefetch=1)
    answer(
        c,
        c.next_exchange() or pytest.fail(),
        dequeue=dequeued(task("a", reserved=False), task("b", reserved=True)),
    )
    c.stop(now=100.0)
    assert not c.wants_exchange() and not c.finished  # 'a' still runs; no fetch, no start
    assert c.handoff_ms == 0
    (release,) = requests_of(c.release_exchange(c.slots.take_all_reserved(), "shutdown"), Release)
    assert release.held == (("b", f"{W}#1"),)
    done(c, "a")
    ex = c.next_exchange()
    assert ex is not None and not requests_of(ex, Dequeue) and requests_of(ex, Ack)
    assert c.on_failure(ex.xid, FailureKind.UNAVAILABLE, now=120.0) == []  # within grace + flush
    ex = c.next_exchange()
    assert ex is not None
    assert c.on_failure(ex.xid, FailureKind.UNAVAILABLE, now=141.0) == [GiveUp(1)]
    assert c.next_exchange() is not None and not c.finished  # the ack is still kept
    # a second signal cuts the grace period: only the flush time is left
    c2 = make()
    answer(c2, c2.next_exchange() or pytest.fail(), dequeue=dequeued(task("a", reserved=False)))
    done(c2, "a")
    c2.stop(now=0.0)
    c2.cut_grace()
    ex2 = c2.next_exchange()
    assert ex2 is not None
    assert c2.on_failure(ex2.xid, FailureKind.UNAVAILABLE, now=11.0) == [GiveUp(1)]
    ex2 = c2.next_exchange()
    assert ex2 is not None
    answer(c2, ex2)
    # the exchange loop stays until the drain has taken back the worker's hand-offs: what it
    # takes from the inbox runs here, and its outcome must still go out
    assert not c2.finished
    c2.close_intake()
    assert c2.finished


def test_a_hand_off_starts_at_once_with_a_free_slot_and_waits_without_one() -> None:
    c = make(concurrency=1, prefetch=1)
    job = _job_reserved("h")
    ex = c.on_handoff(job)
    assert ex is not None and ex.kind is ExchangeKind.HANDOFF_START
    assert c.slots.free(False) == 0  # the slot is held while the start mark is in flight
    assert c.on_handoff(_job_reserved("h2")) is None  # no free slot: reserved
    assert [b.job.id for b in c.slots.buffer] == ["h2"]
    assert runs(answer(c, ex)) == [("h", 1)]
    assert c.slots.handoff_starting == 0 and c.counters.handed_off == 2


def test_a_hand_off_whose_start_reply_is_lost_is_started_again_by_the_next_exchange() -> None:
    c = make(concurrency=1, prefetch=1)
    ex = c.on_handoff(_job_reserved("h"))
    assert ex is not None
    c.on_failure(ex.xid, FailureKind.UNAVAILABLE, now=0.0)
    assert c.slots.handoff_starting == 0 and not c.running
    (start,) = requests_of(c.next_exchange(), Start)
    assert [(j.id, j.token) for j in start.jobs] == [("h", f"{W}#1")]


def test_a_hand_off_never_takes_a_slot_an_exchange_in_flight_will_fill() -> None:
    c = make(concurrency=1, prefetch=1)
    ex = c.next_exchange()  # dequeue with start_now=1 in flight
    assert requests_of(ex, Dequeue)[0].start_now == 1
    assert c.on_handoff(_job_reserved("h")) is None
    assert ex is not None
    assert runs(answer(c, ex, dequeue=dequeued(task("a", reserved=False)))) == [("a", 1)]
    assert len(c.running) == 1 and [b.job.id for b in c.slots.buffer] == ["h"]


def _job_reserved(task_id: str) -> Any:
    import json

    from engine.worker.protocol import parse_handoff

    return parse_handoff("q", json.dumps(task(task_id, reserved=True)))


def test_lower_queues_are_asked_only_for_what_higher_ones_could_not_fill() -> None:
    c = make(concurrency=2, prefetch=2, queues=("hi", "lo"))
    first = c.next_exchange()
    (dq,) = requests_of(first, Dequeue)
    assert dq.queue == "hi" and dq.max_tasks == 4
    assert first is not None
    answer(c, first, dequeue=dequeued(task("h1", reserved=False)))
    follow = c.next_exchange()
    (dq2,) = requests_of(follow, Dequeue)
    assert (dq2.queue, dq2.max_tasks, dq2.start_now) == ("lo", 3, 1)
    assert follow is not None
    answer(c, follow)
    assert not c.wants_exchange()  # the round is over; nothing came back full, so no fetch now
    # a full first queue ends the round
    c2 = make(concurrency=1, prefetch=0, queues=("hi", "lo"))
    ex = c2.next_exchange()
    assert ex is not None
    answer(c2, ex, dequeue=dequeued(task("h1", reserved=False)))
    assert not c2.wants_exchange()


def test_only_an_idle_workers_polls_are_quiet() -> None:
    """A quiet dequeue may leave an unchanged hand-off registration unwritten (dequeue.lua):
    only a poll with nothing running, reserved or reported is one."""
    c = make(concurrency=1, prefetch=1, queues=("hi", "lo"))
    first = c.next_exchange()
    (dq,) = requests_of(first, Dequeue)
    assert dq.quiet  # nothing held, nothing to report
    assert first is not None
    answer(c, first)
    follow = c.next_exchange()
    (dq,) = requests_of(follow, Dequeue)
    assert dq.queue == "lo" and dq.quiet  # the round's later queue: as quiet as the round
    assert follow is not None
    answer(c, follow)
    c.on_idle_poll()
    poll = c.next_exchange()
    (dq,) = requests_of(poll, Dequeue)
    assert dq.quiet
    assert poll is not None
    answer(c, poll, dequeue=dequeued(task("a", reserved=False)))
    follow = c.next_exchange()
    (dq,) = requests_of(follow, Dequeue)
    assert dq.queue == "lo" and not dq.quiet  # 'a' runs
    assert follow is not None
    answer(c, follow)
    done(c, "a")
    after = c.next_exchange()
    (dq,) = requests_of(after, Dequeue)
    assert requests_of(after, Ack) and not dq.quiet  # its ack rides along: the slots changed


def test_outcomes_are_enums() -> None:
    assert Outcome("completed") is Outcome.COMPLETED and isinstance(Outcome.COMPLETED, str)
    assert {m.value for m in Outcome} == {
        "completed",
        "retry",
        "dead",
        "cancelled",
        "timeout",
        "stale",
        "rate_limited",
    }
    assert Progress.__dataclass_params__.frozen  # type: ignore[attr-defined]
