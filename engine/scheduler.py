"""Cron: periodic tasks from 5-field expressions (croniter), evaluated on the Redis clock.

Exactly once per tick, however many schedulers run: every scheduler that sees a tick due
enqueues it under the deterministic id ``cron-<name>-<fire ts>``, and enqueue is idempotent by
id, so one task is created and the others get 'exists'. No lock is held, so a scheduler that
dies mid-tick cannot swallow it.

Catch-up policy (fire once): a scheduler that was down fires only the most recent missed tick
of each entry, never the backlog. A newly registered entry first fires at its next tick.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from engine import ops
from engine.backend import Batch, Op, cmd
from engine.errors import InvalidCron
from engine.ops import Settings

if TYPE_CHECKING:
    from engine.backend import AsyncBackend
    from engine.inspect import CronEntryInfo
    from engine.registry import CronDef, Registry

CRON_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def validate_cron(expression: str, timezone: str = "UTC") -> None:
    """Raise ``InvalidCron`` (one line) for anything but a valid 5-field expression and zone."""
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


def _entry_json(entry: CronDef) -> str:
    return json.dumps(asdict(entry), sort_keys=True, default=str)


def register(settings: Settings, entry: CronDef) -> Op[None]:
    """Store an entry (validated) so every scheduler and the console see it."""
    if not CRON_NAME_RE.match(entry.name):
        raise InvalidCron(
            f"cron entry name {entry.name!r} is invalid: use 1-64 letters, digits, '_', '-', '.', ':'"
        )
    validate_cron(entry.expression, entry.timezone)
    yield cmd("HSET", settings.keyspace.cron, entry.name, _entry_json(entry))


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
    settings: Settings, registry_entries: list[CronDef], task_defaults: dict[str, dict[str, Any]]
) -> Op[list[str]]:
    """One scheduler pass; returns the ids of tasks this pass created."""
    ks = settings.keyspace
    for entry in registry_entries:
        yield from register(settings, entry)
    now_ms = yield from ops.server_time_ms()
    raw, state = yield Batch([cmd("HGETALL", ks.cron), cmd("HGETALL", ks.cron_state)])
    created: list[str] = []
    for name, data in _load_entries(raw).items():
        st = json.loads(state[name]) if name in state else {}
        if st.get("paused"):
            continue
        prev_ms, _ = _fire_times(data["expression"], data.get("timezone", "UTC"), now_ms)
        last = st.get("last_fire_ms")
        if last is None:  # first sight: start from here, do not fire the past tick
            yield cmd("HSETNX", ks.cron_state, name, json.dumps({"last_fire_ms": prev_ms}))
            continue
        if prev_ms <= int(last):
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
                next_fires=tuple(fires),
                runs=runs,
            )
        )
    return out
