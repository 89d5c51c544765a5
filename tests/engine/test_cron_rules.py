"""Cron rules, evaluated against a real Valkey with a fixed clock passed to ``tick_op``: a
fixed-hour entry fires once on a fall-back day; an entry no scheduler declares any more is
orphaned and stops firing; ``rediq cron`` commands. (Expressions that never fire are refused
without a server: tests/pure/test_cron_rules.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from engine import inspect, scheduler
from engine.backend import Call
from engine.cli import cli
from engine.client import Client
from engine.cron import CronDef

NEW_YORK = ZoneInfo("America/New_York")
MINUTE = 60_000


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Epoch ms of a New York wall-clock time (the first one, when it repeats)."""
    return int(datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).timestamp() * 1000)


@pytest.fixture
def entries(client: Client) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        client.run(scheduler.unregister(client.settings, name))


def fires(client: Client, defs: list[CronDef], start_ms: int, end_ms: int, step_ms: int) -> list[str]:
    created: list[str] = []
    for now in range(start_ms, end_ms, step_ms):
        created += client.run(scheduler.tick_op(client.settings, defs, {}, now_ms=now))
    return created


def test_a_daily_entry_fires_once_on_the_fall_back_day(client: Client, entries: list[str]) -> None:
    daily = CronDef("dst-daily", "30 1 * * *", "t", timezone="America/New_York", queue="cron-dst")
    hourly = CronDef("dst-hourly", "30 * * * *", "t", timezone="America/New_York", queue="cron-dst")
    entries += [daily.name, hourly.name]
    # 2026-11-01: at 02:00 EDT the clocks go back to 01:00 EST, so 01:30 happens twice
    created = fires(
        client, [daily, hourly], local_ms(2026, 10, 31, 23, 0), local_ms(2026, 11, 1, 4, 0), 5 * MINUTE
    )
    daily_fires = [t for t in created if t.startswith("cron-dst-daily-")]
    hourly_fires = [t for t in created if t.startswith("cron-dst-hourly-")]
    assert len(daily_fires) == 1, daily_fires
    assert daily_fires[0] == f"cron-dst-daily-{local_ms(2026, 11, 1, 1, 30)}"  # the first 01:30 (EDT)
    # the hourly entry fires every real hour: 23:30, 00:30, 01:30 EDT, 01:30 EST, 02:30, 03:30
    assert len(hourly_fires) == 6, hourly_fires


def test_an_entry_no_scheduler_declares_is_orphaned_and_stops_firing(
    client: Client, entries: list[str]
) -> None:
    sweep = CronDef("orphan-sweep", "*/15 * * * *", "t", queue="cron-orphan")
    entries.append(sweep.name)
    t0 = local_ms(2026, 3, 2, 9, 1)
    assert fires(client, [sweep], t0, t0 + 1, 1) == []  # first sight
    # declared at t0; within one interval it still fires though nobody declares it
    assert len(fires(client, [], t0 + 14 * MINUTE, t0 + 16 * MINUTE, MINUTE)) == 1
    # no scheduler declared it for longer than 15 minutes: orphaned, never fires again
    assert fires(client, [], t0 + 16 * MINUTE, t0 + 120 * MINUTE, 5 * MINUTE) == []
    (entry,) = [e for e in client.call(inspect.cron_entries) if e.name == sweep.name]
    assert entry.orphaned and entry.declared_ms == t0
    # a scheduler whose code declares it again revives it
    assert len(fires(client, [sweep], t0 + 121 * MINUTE, t0 + 136 * MINUTE, 5 * MINUTE)) == 1


def test_cron_list_pause_resume_remove(redis_url: str, client: Client, entries: list[str]) -> None:
    entries.append("cli-report")
    client.run(
        scheduler.register(client.settings, CronDef("cli-report", "0 6 * * *", "report", queue="cron-cli"))
    )

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--redis-url", redis_url, "cron", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    listing = run("list")
    assert "cli-report" in listing and "0 6 * * *" in listing and "active" in listing
    assert "paused" in run("pause", "cli-report")
    assert [e.paused for e in client.call(inspect.cron_entries) if e.name == "cli-report"] == [True]
    assert "paused" in run("list")
    run("resume", "cli-report")
    assert [e.paused for e in client.call(inspect.cron_entries) if e.name == "cli-report"] == [False]
    assert "removed" in run("remove", "cli-report")
    assert "cli-report" not in run("list")
    unknown = CliRunner().invoke(cli, ["--redis-url", redis_url, "cron", "pause", "cli-report"])
    assert unknown.exit_code != 0 and "rediq cron list" in str(unknown.exception)


def test_a_stored_entry_that_never_fires_is_skipped_and_the_others_still_work(
    client: Client, entries: list[str]
) -> None:
    """An entry written by an older version (or by hand) with '0 0 31 2 *' used to raise in
    every scheduler pass, which ended the worker's maintenance loop: no cron, no outbox replay."""
    entries += ["never", "hourly-ok"]
    never = {"name": "never", "expression": "0 0 31 2 *", "task_type": "t", "queue": "cron-x"}
    client.backend.execute(Call(command=("HSET", client.settings.keyspace.cron, "never", json.dumps(never))))
    ok = CronDef("hourly-ok", "0 * * * *", "t", queue="cron-x")
    assert client.run(scheduler.tick_op(client.settings, [ok], {})) == []  # first sight of ok
    assert [e.name for e in client.call(inspect.cron_entries) if e.name in entries] == ["hourly-ok"]
