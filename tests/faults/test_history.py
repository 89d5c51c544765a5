"""The fault harness's checker judges canned histories as the issue's invariants say (pure: no
Redis): each check fires on the history that breaks it and stays quiet on the lawful one."""

from __future__ import annotations

from tests.faults.history import History, RunEnd, TaskRecord


def history(max_retry: int = 1) -> History:
    h = History()
    h.add_task(TaskRecord("t", max_retry))
    return h


def test_two_runs_at_once_need_a_lapse_in_between() -> None:
    h = history()
    h.begin("t", "w1", 1)
    h.begin("t", "w2", 2)
    assert any("still running" in v for v in h.violations)

    lawful = history()
    lawful.begin("t", "w1", 1)
    lawful.holder_lost("t")  # w1 stalled past its lease
    lawful.begin("t", "w2", 2)
    assert lawful.violations == []


def test_an_attempt_runs_once_per_life() -> None:
    h = history()
    h.begin("t", "w1", 1).end = RunEnd.CANCELLED
    h.begin("t", "w2", 1)
    assert any("a second time" in v for v in h.violations)

    lawful = history()
    lawful.begin("t", "w1", 1).end = RunEnd.OK
    lawful.new_life("t")  # requeued: attempts start afresh
    lawful.begin("t", "w2", 1)
    assert lawful.violations == []


def test_attempts_past_max_retry_are_refused() -> None:
    h = history(max_retry=0)
    h.begin("t", "w1", 2)
    assert any("max_retry 0" in v for v in h.violations)


def test_dead_without_a_run_needs_a_lost_holder() -> None:
    assert history().final_checks({"t": "dead"}) == [
        "t is dead without its handler having run (and no worker holding it died)"
    ]
    lawful = history()
    lawful.holder_lost("t")
    assert lawful.final_checks({"t": "dead"}) == []


def test_a_success_nothing_interrupted_must_end_completed() -> None:
    h = history()
    h.begin("t", "w1", 1).end = RunEnd.OK
    assert any("succeeded" in p for p in h.final_checks({"t": "dead"}))
    assert h.final_checks({"t": "completed"}) == []

    lawful = history()
    lawful.begin("t", "w1", 1).end = RunEnd.OK
    lawful.holder_lost("t")  # killed before its ack went out: the next run failed for good
    assert lawful.final_checks({"t": "dead"}) == []


def test_a_task_must_finish() -> None:
    assert history().final_checks({"t": "active"}) == [
        "t did not finish: it is 'active' after the settle phase"
    ]


def test_a_cancelled_delivery_that_ended_must_not_run_again() -> None:
    h = history()
    h.begin("t", "w1", 1).end = RunEnd.CANCELLED
    h.cancel_requested("t", 1)
    h.holder_lost("t")  # its worker died before it acted on the cancel
    h.begin("t", "w2", 2)
    assert any("cancel was requested" in v for v in h.violations)

    lawful = history()
    lawful.cancel_requested("t", 1)  # requested while the task was prefetched: it may still start
    lawful.begin("t", "w1", 1)
    assert lawful.violations == []


def test_a_cancel_is_not_forgotten_when_its_delivery_fails() -> None:
    """Deep-profile finding (a): the handler raised before its worker heard of the cancel, the
    failure was taken as a retry, and the next attempt ran. No kill or stall came between, so
    only the attempt number tells the checker that a new delivery ran."""
    h = history()
    h.begin("t", "w1", 1).end = RunEnd.RAISED
    h.cancel_requested("t", 1)
    h.begin("t", "w1", 2)
    assert any("runs again (attempt 2) after a cancel was requested" in v for v in h.violations)


def test_a_success_nothing_interrupted_is_not_run_again() -> None:
    h = history()
    h.begin("t", "w1", 1).end = RunEnd.OK
    h.begin("t", "w2", 2)
    assert any("succeeded" in v for v in h.violations)

    lawful = history()
    lawful.begin("t", "w1", 1).end = RunEnd.OK
    lawful.holder_lost("t")  # w1 was killed before its ack went out
    lawful.begin("t", "w2", 2)
    assert lawful.violations == []
