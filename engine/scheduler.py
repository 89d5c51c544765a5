"""Cron: periodic tasks from 5-field expressions (croniter), evaluated on the Redis clock.

Exactly once per tick, however many schedulers run: every scheduler that sees a tick due
enqueues it under the deterministic id ``cron-<name>-<fire ts>``, and enqueue is idempotent by
id, so one task is created and the others get 'exists'. No lock is held, so a scheduler that
dies mid-tick cannot swallow it.

Catch-up policy (fire once): a scheduler that was down fires only the most recent missed tick
of each entry, never the backlog. A newly registered entry first fires at its next tick.

Daylight saving: an entry with fixed hours (``30 1 * * *``) fires once on the fall-back day,
at the first of the two 01:30s (as Vixie cron does); an entry whose hour field is ``*`` or a
step fires in both repeated hours, since each is a real hour that passed.

Orphans: every scheduler stamps the entries its code declares (``declared_ms``) on each pass.
An entry that no live scheduler declared for longer than its interval was removed from the
code: it is marked orphaned and stops firing (``rediq cron list`` shows it, ``rediq cron
remove`` deletes it); a scheduler that declares it again revives it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from engine import ops
from engine.backend import Batch, Op, cmd
from engine.errors import InvalidCron
from engine.ops import Settings

if TYPE_CHECKING:
    from engine.backend import AsyncBackend
    from engine.inspect import CronEntryInfo
    from engine.registry import CronDef, Registry

CRON_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


# a valid day-of-month/month pair fires within 4 years (29 February); one that does not in
# that span never fires (31 February, 30 February, 31 April...)
NEVER_FIRES_PROBE = datetime(2024, 1, 1, tzinfo=UTC)


def validate_cron(expression: str, timezone: str = "UTC") -> None:
    """Raise ``InvalidCron`` (one line) for anything but a valid 5-field expression and zone
    that fires at least once."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidCron(f"cron expression {expression!r} has {len(fields)} fields, expected 5")
    if not croniter.is_valid(expression):
        raise InvalidCron(f"cron expression {expression!r} is not valid")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCron(
            f"unknown timezone {timezone!r}", fix="Use an IANA zone name like 'Europe/Paris'"
        ) from None
    try:
        croniter(expression, NEVER_FIRES_PROBE, max_years_between_matches=5).get_next(datetime)
    except (CroniterError, ValueError):
        raise InvalidCron(
            f"cron expression {expression!r} never fires (no such day in any year)",
            fix="Check the day-of-month and month fields (e.g. '0 0 28 2 *' for 28 February)",
        ) from None


def _interval_ms(expression: str, timezone: str, now_ms: int) -> int:
    """The time between the fire before ``now_ms`` and the one after it."""
    prev_ms, next_ms = _fire_times(expression, timezone, now_ms)
    return max(next_ms - prev_ms, 60_000)


def _fixed_hours(expression: str) -> bool:
    hour = expression.split()[1]
    return not hour.startswith("*")


def _wall_clock(ms: int, timezone: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).replace(tzinfo=None)


def _repeated_wall_clock(expression: str, timezone: str, fire_ms: int, last_ms: int) -> bool:
    """True for the second of two fires at the same local time: the repeated hour of a
    fall-back day, which a fixed-hour entry skips."""
    return (
        _fixed_hours(expression)
        and fire_ms - last_ms <= 2 * 3_600_000
        and _wall_clock(fire_ms, timezone) == _wall_clock(last_ms, timezone)
    )


def _fire_times(expression: str, timezone: str, now_ms: int) -> tuple[int, int]:
    """(most recent fire time <= now, next fire time > now), in epoch ms."""
    now = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone))
    it = croniter(expression, now)
    nxt = it.get_next(datetime)
    prev = croniter(expression, now).get_prev(datetime)
    return int(prev.timestamp() * 1000), int(nxt.timestamp() * 1000)


def next_fire_times(expression: str, timezone: str, now_ms: int, count: int = 5) -> list[int]:
    it = croniter(expression, datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone)))
    return [int(it.get_next(datetime).timestamp() * 1000) for _ in range(count)]


def _entry_json(entry: CronDef, declared_ms: int) -> str:
    return json.dumps({**asdict(entry), "declared_ms": declared_ms}, sort_keys=True, default=str)


def register(settings: Settings, entry: CronDef, now_ms: int | None = None) -> Op[None]:
    """Store an entry (validated) so every scheduler and the console see it, stamped as
    declared now (an entry nobody declares for longer than its interval is orphaned)."""
    if not CRON_NAME_RE.match(entry.name):
        raise InvalidCron(
            f"cron entry name {entry.name!r} is invalid: use 1-64 letters, digits, '_', '-', '.', ':'"
        )
    validate_cron(entry.expression, entry.timezone)
    if now_ms is None:
        now_ms = yield from ops.server_time_ms()
    yield cmd("HSET", settings.keyspace.cron, entry.name, _entry_json(entry, now_ms))


def is_orphaned(data: dict[str, Any], now_ms: int) -> bool:
    """Declared by no scheduler for longer than its interval (an entry stored before
    ``declared_ms`` existed is not judged)."""
    declared = data.get("declared_ms")
    if not isinstance(declared, int):
        return False
    interval = _interval_ms(data["expression"], data.get("timezone", "UTC"), now_ms)
    return now_ms - declared > interval


def unregister(settings: Settings, name: str) -> Op[bool]:
    ks = settings.keyspace
    removed, _ = yield Batch([cmd("HDEL", ks.cron, name), cmd("HDEL", ks.cron_state, name)])
    return bool(removed)


def _load_entries(raw: dict[str, str]) -> dict[str, dict[str, Any]]:
    entries = {}
    for name, text in raw.items():
        try:
            data = json.loads(text)
            validate_cron(data["expression"], data.get("timezone", "UTC"))
            entries[name] = data
        except (ValueError, KeyError, TypeError, InvalidCron):
            continue  # a malformed entry written by hand is skipped, never fatal
    return entries


def tick_op(
    settings: Settings,
    registry_entries: list[CronDef],
    task_defaults: dict[str, dict[str, Any]],
    now_ms: int | None = None,
) -> Op[list[str]]:
    """One scheduler pass; returns the ids of tasks this pass created. ``now_ms``: the clock
    to evaluate against (tests); default the Redis clock."""
    ks = settings.keyspace
    if now_ms is None:
        now_ms = yield from ops.server_time_ms()
    for entry in registry_entries:
        yield from register(settings, entry, now_ms)
    raw, state = yield Batch([cmd("HGETALL", ks.cron), cmd("HGETALL", ks.cron_state)])
    created: list[str] = []
    for name, data in _load_entries(raw).items():
        st = json.loads(state[name]) if name in state else {}
        if st.get("paused"):
            continue
        tz = data.get("timezone", "UTC")
        orphaned = is_orphaned(data, now_ms)
        if orphaned != bool(st.get("orphaned")):
            st["orphaned"] = orphaned
            yield cmd("HSET", ks.cron_state, name, json.dumps(st))
        if orphaned:
            continue
        prev_ms, _ = _fire_times(data["expression"], tz, now_ms)
        last = st.get("last_fire_ms")
        if last is None:  # first sight: start from here, do not fire the past tick
            st["last_fire_ms"] = prev_ms
            yield cmd("HSET" if name in state else "HSETNX", ks.cron_state, name, json.dumps(st))
            continue
        if prev_ms <= int(last):
            continue
        if _repeated_wall_clock(data["expression"], tz, prev_ms, int(last)):
            st["last_fire_ms"] = prev_ms  # the repeated 01:30 of a fall-back day: already fired
            yield cmd("HSET", ks.cron_state, name, json.dumps(st))
            continue
        from engine.client import build_task

        task_type = data["task_type"]
        options = dict(task_defaults.get(task_type, {}))
        if data.get("queue"):
            options["queue"] = data["queue"]
        task = build_task(
            task_type,
            data.get("payload"),
            id=f"cron-{name}-{prev_ms}",
            metadata={"cron": name, "fire_ms": str(prev_ms)},
            **options,
        )
        results = yield from ops.enqueue_many(settings, [task])
        if results[0].created:
            created.append(task.id)
        _record_run(st, prev_ms, task.id, task.queue, manual=False)
        yield cmd("HSET", ks.cron_state, name, json.dumps(st))
    return created


RUNS_KEPT = 10


def _record_run(st: dict[str, Any], fire_ms: int, task_id: str, queue: str, *, manual: bool) -> None:
    if not manual:
        st["last_fire_ms"] = fire_ms
    st.update(last_task_id=task_id, last_queue=queue)
    runs = [r for r in st.get("runs", []) if r.get("task_id") != task_id]
    st["runs"] = [{"fire_ms": fire_ms, "task_id": task_id, "queue": queue, "manual": manual}, *runs][
        :RUNS_KEPT
    ]


def run_now(settings: Settings, name: str, task_defaults: dict[str, dict[str, Any]] | None = None) -> Op[str]:
    """Fire an entry now, outside its schedule (its regular ticks are unaffected)."""
    from engine.client import build_task

    ks = settings.keyspace
    raw, state_raw = yield Batch([cmd("HGET", ks.cron, name), cmd("HGET", ks.cron_state, name)])
    entries = _load_entries({name: raw} if raw else {})
    if name not in entries:
        raise InvalidCron(f"no cron entry named {name!r}", fix="List entries with `rediq cron list`")
    data = entries[name]
    now_ms = yield from ops.server_time_ms()
    options = dict((task_defaults or {}).get(data["task_type"], {}))
    if data.get("queue"):
        options["queue"] = data["queue"]
    task = build_task(
        data["task_type"],
        data.get("payload"),
        id=f"cron-{name}-manual-{now_ms}",
        metadata={"cron": name, "manual": "1"},
        **options,
    )
    yield from ops.enqueue_many(settings, [task])
    st = json.loads(state_raw) if state_raw else {"last_fire_ms": now_ms}
    _record_run(st, now_ms, task.id, task.queue, manual=True)
    yield cmd("HSET", ks.cron_state, name, json.dumps(st))
    return task.id


async def tick(backend: AsyncBackend, settings: Settings, registry: Registry) -> list[str]:
    defaults = {
        d.task_type: dict(queue=d.queue, priority=d.priority, max_retry=d.max_retry, timeout=d.timeout)
        for d in registry.definitions.values()
    }
    return await backend.run(tick_op(settings, list(registry.crons.values()), defaults))


def set_paused(settings: Settings, name: str, paused: bool) -> Op[bool]:
    ks = settings.keyspace
    raw = yield cmd("HGET", ks.cron_state, name)
    exists = yield cmd("HEXISTS", ks.cron, name)
    if not exists:
        return False
    st = json.loads(raw) if raw else {}
    st["paused"] = paused
    yield cmd("HSET", ks.cron_state, name, json.dumps(st))
    return True


def list_entries(settings: Settings) -> Op[list[CronEntryInfo]]:
    from engine.inspect import CronEntryInfo, CronRun

    ks = settings.keyspace
    now_ms = yield from ops.server_time_ms()
    raw, state = yield Batch([cmd("HGETALL", ks.cron), cmd("HGETALL", ks.cron_state)])
    entries = _load_entries(raw)
    states = {name: json.loads(state[name]) for name in entries if name in state}
    lookups = sorted({(r["queue"], r["task_id"]) for st in states.values() for r in st.get("runs", [])})
    task_states: dict[tuple[str, str], str] = {}
    if lookups:
        replies = yield Batch([cmd("HGET", ks.queue(q).task(t), "state") for q, t in lookups])
        task_states = {key: r for key, r in zip(lookups, replies, strict=True) if r}
    out = []
    for name in sorted(entries):
        data = entries[name]
        st = states.get(name, {})
        tz = data.get("timezone", "UTC")
        runs = tuple(
            CronRun(
                r["fire_ms"],
                r["task_id"],
                r["queue"],
                task_states.get((r["queue"], r["task_id"])),
                r["manual"],
            )
            for r in st.get("runs", [])
        )
        fires = next_fire_times(data["expression"], tz, now_ms)
        out.append(
            CronEntryInfo(
                name=name,
                expression=data["expression"],
                timezone=tz,
                task_type=data["task_type"],
                queue=data.get("queue") or "",
                next_fire_ms=fires[0],
                last_fire_ms=runs[0].fire_ms if runs else None,
                last_task_id=runs[0].task_id if runs else None,
                last_state=runs[0].state if runs else None,
                paused=bool(st.get("paused")),
                orphaned=is_orphaned(data, now_ms),
                declared_ms=data.get("declared_ms") if isinstance(data.get("declared_ms"), int) else None,
                next_fires=tuple(fires),
                runs=runs,
            )
        )
    return out
