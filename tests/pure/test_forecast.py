"""The backlog forecast counts inflow: pending shrinks at completions minus enqueues."""

from __future__ import annotations

from engine.inspect import QueueSummary, forecast_of


def summary(pending: int, done: tuple[int, ...], arrived: tuple[int, ...]) -> QueueSummary:
    return QueueSummary("q", {"pending": pending}, False, 0, 0, None, throughput=done, arrivals=arrived)


def test_a_growing_backlog_is_not_draining_however_fast_the_workers_run() -> None:
    # 600 completions a minute while 80 a second arrive: pending grows by 4,200 a minute
    fc = forecast_of(summary(13_200, (600,) * 6, (5_400,) * 6))
    assert fc.drain_minutes is None and fc.level == "alert"
    assert fc.rate_per_min == 600 and fc.inflow_per_min == 5_400


def test_drain_time_uses_the_net_rate_over_the_last_five_full_minutes() -> None:
    # the current (last) minute is partial and ignored; the five before it average 100 out, 40 in
    fc = forecast_of(summary(600, (0, 100, 100, 100, 100, 100, 999), (0, 40, 40, 40, 40, 40, 0)))
    assert fc.rate_per_min == 100 and fc.inflow_per_min == 40
    assert fc.drain_minutes == 10.0 and fc.level == "warn"


def test_empty_queue_is_drained_and_a_stuck_one_never_drains() -> None:
    assert forecast_of(summary(0, (0, 0), (0, 5))).drain_minutes == 0.0
    stuck = forecast_of(summary(5, (0, 0, 0), (0, 0, 0)))
    assert stuck.drain_minutes is None and stuck.level == "alert"
