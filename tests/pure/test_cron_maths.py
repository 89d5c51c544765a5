"""Cron maths without a server: fire times (next, previous, strictly after now), the interval
an entry is judged orphaned by, the repeated hour of a fall-back day, and every refusal of
``validate_cron`` in one line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import cron
from engine.errors import InvalidCron

MINUTE = 60_000
HOUR = 60 * MINUTE


def ms(text: str) -> int:
    """Epoch ms of an ISO UTC time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


NOON = ms("2026-03-02T12:00:00")
# Europe/Paris falls back on 2026-10-25: 02:30 local is 00:30 UTC, then again 01:30 UTC
FIRST_0230 = ms("2026-10-25T00:30:00")
SECOND_0230 = ms("2026-10-25T01:30:00")


def test_next_fire_times_are_strictly_after_now_and_count_as_asked() -> None:
    assert cron.next_fire_times("*/15 * * * *", "UTC", NOON) == [
        NOON + k * 15 * MINUTE for k in (1, 2, 3, 4, 5)
    ]
    assert cron.next_fire_times("*/15 * * * *", "UTC", NOON + 1, count=2) == [
        NOON + 15 * MINUTE,
        NOON + 30 * MINUTE,
    ]
    assert cron.next_fire_times("0 0 * * *", "UTC", NOON, count=1) == [ms("2026-03-03T00:00:00")]


def test_fire_times_follow_the_entry_timezone() -> None:
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer
    assert cron.next_fire_times("0 9 * * *", "Europe/Paris", NOON, count=1) == [ms("2026-03-03T08:00:00")]
    assert cron.next_fire_times("0 9 * * *", "Europe/Paris", ms("2026-06-01T12:00:00"), count=1) == [
        ms("2026-06-02T07:00:00")
    ]


def test_fire_times_are_the_ones_around_now() -> None:
    assert cron.fire_times("*/15 * * * *", "UTC", NOON + 5 * MINUTE) == (NOON, NOON + 15 * MINUTE)
    # exactly on a fire time it counts as passed: a scheduler waking on time fires it (croniter
    # alone leaves it out of both the previous and the next fire)
    assert cron.fire_times("*/15 * * * *", "UTC", NOON) == (NOON, NOON + 15 * MINUTE)
    assert cron.fire_times("*/15 * * * *", "UTC", NOON + 1) == (NOON, NOON + 15 * MINUTE)
    assert cron.fire_times("0 9 * * *", "Europe/Paris", NOON) == (
        ms("2026-03-02T08:00:00"),
        ms("2026-03-03T08:00:00"),
    )


@pytest.mark.parametrize(
    ("expression", "interval"),
    [("* * * * *", MINUTE), ("*/5 * * * *", 5 * MINUTE), ("0 * * * *", HOUR), ("0 0 * * *", 24 * HOUR)],
)
def test_interval_is_the_gap_between_the_fires_around_now(expression: str, interval: int) -> None:
    assert cron.interval_ms(expression, "UTC", NOON + 1) == interval


def test_only_an_entry_with_fixed_hours_skips_a_repeated_wall_clock() -> None:
    assert cron._fixed_hours("30 2 * * *") and cron._fixed_hours("0 1-3 * * *")
    assert not cron._fixed_hours("30 * * * *") and not cron._fixed_hours("0 */2 * * *")
    assert cron.repeated_wall_clock("30 2 * * *", "Europe/Paris", SECOND_0230, FIRST_0230)
    # every hour: both 02:30s are real fires
    assert not cron.repeated_wall_clock("30 * * * *", "Europe/Paris", SECOND_0230, FIRST_0230)
    # the same instants read in UTC are an hour apart on the wall clock
    assert not cron.repeated_wall_clock("30 2 * * *", "UTC", SECOND_0230, FIRST_0230)
    # the same wall clock a day apart is the next day's fire, not a repeat
    assert not cron.repeated_wall_clock("30 2 * * *", "UTC", FIRST_0230 + 24 * HOUR, FIRST_0230)


def test_wall_clock_is_local_time_without_a_zone() -> None:
    for instant, zone, local in (
        (FIRST_0230, "Europe/Paris", "2026-10-25T02:30:00"),
        (SECOND_0230, "Europe/Paris", "2026-10-25T02:30:00"),
        (NOON, "UTC", "2026-03-02T12:00:00"),
    ):
        wall = cron._wall_clock(instant, zone)
        assert wall.tzinfo is None and wall.isoformat() == local


def test_an_entry_is_orphaned_once_undeclared_for_longer_than_its_interval() -> None:
    entry = {"expression": "*/5 * * * *", "timezone": "UTC"}
    now = NOON + 1
    assert not cron.is_orphaned({**entry, "declared_ms": now - 5 * MINUTE}, now)
    assert cron.is_orphaned({**entry, "declared_ms": now - 5 * MINUTE - 1}, now)
    # stored before declarations were stamped, or stamped with junk: not judged
    assert not cron.is_orphaned(entry, now + 10 * 24 * HOUR)
    assert not cron.is_orphaned({**entry, "declared_ms": "0"}, now)
    # no timezone stored: UTC (Paris would make a daily entry's gap around a DST change 23 h)
    daily = {"expression": "0 0 * * *", "declared_ms": now - 24 * HOUR}
    assert not cron.is_orphaned(daily, now)
    assert cron.is_orphaned({**daily, "declared_ms": now - 24 * HOUR - 1}, now)


@pytest.mark.parametrize(
    ("expression", "timezone", "fragment"),
    [
        ("* * * *", "UTC", "has 4 fields, expected 5 or 6"),
        ("0 * * * * * *", "UTC", "has 7 fields, expected 5 or 6"),
        ("0 * * * * *", "UTC", "fires every second of the minutes '0' (seconds are the last field)"),
        ("", "UTC", "has 0 fields, expected 5 or 6"),
        ("61 * * * *", "UTC", "is not valid"),
        ("0 25 * * *", "UTC", "is not valid"),
        ("0 0 * * *", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        ("0 0 * * *", "../etc/passwd", "unknown timezone"),
        ("0 0 31 2 *", "UTC", "never fires"),
    ],
)
def test_refusals_are_one_line(expression: str, timezone: str, fragment: str) -> None:
    with pytest.raises(InvalidCron) as info:
        cron.validate_cron(expression, timezone)
    message = str(info.value)
    assert fragment in message and message.startswith("E009: ") and "\n" not in message, message
    if "timezone" in fragment:
        assert info.value.fix == "Use an IANA zone name like 'Europe/Paris'"
    elif "never fires" in fragment:
        assert info.value.fix == "Check the day-of-month and month fields (e.g. '0 0 28 2 *' for 28 February)"


def test_valid_entries_pass() -> None:
    cron.validate_cron("*/10 * * * *")
    cron.validate_cron("0 9 * * 1-5", "Europe/Paris")


# -------------------------------------------- against the survivors of the engine/cron.py run


def test_a_fire_one_millisecond_ahead_is_still_the_next_one() -> None:
    assert cron.next_fire_times("*/15 * * * *", "UTC", NOON - 1, count=2) == [NOON, NOON + 15 * MINUTE]


def test_an_entry_is_judged_orphaned_by_the_gap_in_its_own_zone() -> None:
    # Paris falls back in the night of 2026-10-25: that day's midnight-to-midnight gap is 25 h
    # (00:00 CEST is 22:00 UTC the day before, the next 00:00 CET is 23:00 UTC); in UTC it is 24 h
    now = ms("2026-10-25T12:00:00")
    daily = {
        "expression": "0 0 * * *",
        "timezone": "Europe/Paris",
        "declared_ms": now - 24 * HOUR - 30 * MINUTE,
    }
    assert cron.interval_ms("0 0 * * *", "Europe/Paris", now) == 25 * HOUR
    assert not cron.is_orphaned(daily, now)
    assert cron.is_orphaned({**daily, "timezone": "UTC"}, now)


def test_a_two_hour_fall_back_is_a_repeated_wall_clock_too() -> None:
    # Antarctica/Troll goes from UTC+2 to UTC+0 (01:00 UTC, 2026-10-25): 01:30 local happens at
    # 23:30 UTC the day before and again at 01:30 UTC, two hours apart
    first, second = ms("2026-10-24T23:30:00"), ms("2026-10-25T01:30:00")
    assert second - first == 2 * HOUR
    assert cron.repeated_wall_clock("30 1 * * *", "Antarctica/Troll", second, first)
    assert not cron.repeated_wall_clock("30 * * * *", "Antarctica/Troll", second, first)
