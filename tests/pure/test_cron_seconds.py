"""Cron maths for 6-field expressions (seconds last, croniter's order) and the scheduler's sleep,
without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import cron
from engine.errors import InvalidCron
from engine.registry import Registry

T0 = int(datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC).timestamp() * 1000)


def test_a_six_field_expression_has_seconds_last() -> None:
    cron.validate_cron("* * * * * */10")
    assert cron.next_fire_times("* * * * * */10", "UTC", T0 + 3_000, 3) == [
        T0 + 10_000,
        T0 + 20_000,
        T0 + 30_000,
    ]
    # the first five fields keep their crontab meaning: 09:30:15 every day
    assert cron.next_fire_times("30 9 * * * 15", "UTC", T0, 1) == [T0 + 30 * 60_000 + 15_000]


@pytest.mark.parametrize(
    ("expression", "fixed"), [("*/10 * * * * *", "* * * * * */10"), ("0 * * * * *", "* * * * * 0")]
)
def test_a_seconds_first_expression_is_refused_with_the_seconds_last_form(
    expression: str, fixed: str
) -> None:
    with pytest.raises(InvalidCron) as caught:
        cron.validate_cron(expression)
    line = str(caught.value)
    assert line.startswith("E009: ") and "\n" not in line
    assert "seconds are the last field" in line and repr(fixed) in line


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * * *", "* * * * * 61"])
def test_wrong_field_counts_and_seconds_are_refused_in_one_line(expression: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        cron.validate_cron(expression)
    assert str(caught.value).startswith("E009: ") and "\n" not in str(caught.value)


def test_every_second_is_allowed() -> None:
    cron.validate_cron("* * * * * *")


def test_a_fire_at_exactly_now_counts_as_passed() -> None:
    """croniter leaves its start out of both directions: evaluated at exactly 09:00:10 the
    10-second fire would be neither the last nor the next one, and a scheduler waking on time
    would skip it."""
    assert cron.fire_times("* * * * * */10", "UTC", T0 + 10_000) == (T0 + 10_000, T0 + 20_000)
    assert cron.fire_times("* * * * * */10", "UTC", T0 + 9_999) == (T0, T0 + 10_000)
    assert cron.fire_times("* * * * *", "UTC", T0) == (T0, T0 + 60_000)


def test_the_scheduler_sleeps_until_just_past_the_next_fire_and_no_longer_than_its_bound() -> None:
    due = cron.CronPass(now_ms=T0, created=[], next_due_ms=T0 + 1_200)
    assert cron.sleep_s(due, 5.0) == pytest.approx(1.2 + cron.WAKE_SLACK_MS / 1000)
    assert cron.sleep_s(due, 0.5) == 0.5
    late = cron.CronPass(now_ms=T0 + 2_000, created=[], next_due_ms=T0 + 1_200)
    assert cron.sleep_s(late, 5.0) == 0.0
    assert cron.sleep_s(cron.CronPass(now_ms=T0, created=[], next_due_ms=None), 5.0) == 5.0


def test_a_seconds_entry_is_not_orphaned_within_a_minute() -> None:
    data = {"expression": "* * * * * */10", "declared_ms": T0}
    assert not cron.is_orphaned(data, T0 + 59_000)
    assert cron.is_orphaned(data, T0 + 61_000)


def test_registry_cron_takes_seconds_and_run_at_startup_and_refuses_bad_names() -> None:
    registry = Registry()
    registry.cron("heartbeat", "* * * * * */10", "ping", run_at_startup=True)
    assert registry.crons["heartbeat"].run_at_startup
    with pytest.raises(InvalidCron, match="name"):
        registry.cron("bad name", "* * * * *", "ping")
