"""Cron in one place: declarations, validation, ticks, listing and control of periodic tasks.

Expressions: 5 fields (minute hour day-of-month month day-of-week), or 6 with a **seconds field
last** (croniter's order: ``* * * * * */10`` is every 10 seconds). Seconds last keeps the first
five fields meaning what they mean in every crontab; a seconds-first expression read in this
order (``*/10 * * * * *``: every second of every tenth minute) is refused with the fix.
Evaluated on the Redis clock.

Exactly once per tick, however many schedulers run: every scheduler that sees a tick due
enqueues it under the deterministic id ``cron-<name>-<fire ms>``, and enqueue is idempotent by
id, so one task is created and the others get 'exists'. No lock is held, so a scheduler that
dies mid-tick cannot swallow it.

When: each worker runs one scheduler loop (``run_scheduler``) that sleeps until the earliest
next fire of the active entries (at most ``max_sleep_s``, so entries other processes add or
resume are seen), so an entry fires within a pass's round trips of its time, not at the next
maintenance pass.

Catch-up policy (fire once): a scheduler that was down fires only the most recent missed tick
of each entry, never the backlog. A newly registered entry first fires at its next tick.

``run_at_startup``: one run when the fleet starts, not one per worker. Every live scheduler
keeps a marker per such entry alive (``FLEET_ALIVE_MS``); a scheduler whose first pass finds no
marker (SET NX wins: no scheduler of this entry ran for that long) enqueues one run. Workers
starting together fire it once; a rolling restart (some scheduler always alive) does not fire
it; a start after every worker was stopped for longer than ``FLEET_ALIVE_MS`` does.

Daylight saving: an entry with fixed hours (``30 1 * * *``) fires once on the fall-back day,
at the first of the two 01:30s (as Vixie cron does); an entry whose hour field is ``*`` or a
step fires in both repeated hours, since each is a real hour that passed.

Orphans: every scheduler stamps the entries its code declares (``declared_ms``) on its passes
(at least every ``DECLARE_EVERY_MS``). An entry that no live scheduler declared for longer than
its interval (at least a minute) was removed from the code: it is marked orphaned and stops
firing (``rediq cron list`` shows it, ``rediq cron remove`` deletes it); a scheduler that
declares it again revives it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from engine import ops
from engine.backend import Batch, Op, cmd
from engine.declarations import Declaration
from engine.errors import InvalidCron, InvalidTask, PayloadError, RediqError
from engine.ops import Settings, build_task
from engine.task import Task

if TYPE_CHECKING:
    from engine.backend import AsyncBackend

log = logging.getLogger("rediq.cron")

CRON_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

# a valid day-of-month/month pair fires within 4 years (29 February); one that does not in
# that span never fires (31 February, 30 February, 31 April...)
NEVER_FIRES_PROBE = datetime(2024, 1, 1, tzinfo=UTC)

MIN_INTERVAL_MS = 60_000
"""Orphan judgement never uses less than a minute, however often an entry fires."""
DECLARE_EVERY_MS = 5_000
"""How often a scheduler re-stamps the entries its code declares (between, passes only read)."""
FLEET_ALIVE_MS = 30_000
"""A ``run_at_startup`` marker outlives its last scheduler by this long (or by three sleeps of
the scheduler, if longer): a worker starting later than that after the whole fleet stopped
counts as a fleet start."""
WAKE_SLACK_MS = 5
"""Sleep this much past a fire time, so the pass after the wake sees the fire as due."""
RUNS_KEPT = 10


# ---------------------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class CronDef:
    """A periodic task as declared in code (``registry.cron(...)``)."""

    name: str
    expression: str
    task_type: str
    payload: Any = None
    timezone: str = "UTC"
    queue: str | None = None
    run_at_startup: bool = False
    """Also enqueue one run when the fleet starts (see the module's docstring)."""


class CronSource(Protocol):
    """What a scheduler reads from the app (a ``Registry``): its entries and its types'
    declarations (a fired task takes its type's queue, priority, retries and timeout)."""

    crons: dict[str, CronDef]

    def declarations(self) -> dict[str, Declaration]: ...


@dataclass(frozen=True, slots=True)
class CronRun:
    fire_ms: int
    task_id: str
    queue: str
    state: str | None
    manual: bool = False
    startup: bool = False
    """Enqueued by ``run_at_startup`` when the fleet started, not by the schedule."""


@dataclass(frozen=True, slots=True)
class CronEntryInfo:
    name: str
    expression: str
    timezone: str
    task_type: str
    queue: str
    next_fire_ms: int | None
    last_fire_ms: int | None = None
    last_task_id: str | None = None
    last_state: str | None = None
    """State of the task the last fire created (``completed``, ``dead``…), if still known."""
    paused: bool = False
    next_fires: tuple[int, ...] = ()
    """The next five fire times (epoch ms)."""
    runs: tuple[CronRun, ...] = ()
    """The last runs, newest first, with the state of the task each created."""
    orphaned: bool = False
    """Declared by no live scheduler for longer than its interval: it no longer fires."""
    declared_ms: int | None = None
    """When a scheduler last declared it (its code still holds it)."""
    run_at_startup: bool = False


@dataclass(frozen=True, slots=True)
class CronPass:
    """What one scheduler pass did and when the next one is due."""

    now_ms: int
    created: list[str]
    next_due_ms: int | None
    """The earliest next fire of an active entry (None: no active entry)."""


# ------------------------------------------------------------------------------ validation


def validate_cron(expression: str, timezone: str = "UTC") -> None:
    """Raise ``InvalidCron`` (one line) for anything but a valid 5- or 6-field expression (seconds
    last) and zone that fires at least once."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidCron(f"cron expression {expression!r} has {len(fields)} fields, expected 5 or 6")
    if not croniter.is_valid(expression):
        raise InvalidCron(f"cron expression {expression!r} is not valid")
    if len(fields) == 6 and fields[5] == "*" and fields[0] != "*":
        raise InvalidCron(
            f"cron expression {expression!r} fires every second of the minutes {fields[0]!r} "
            "(seconds are the last field)",
            fix=f"For seconds first, move them last: '{' '.join([*fields[1:], fields[0]])}'",
        )
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


def validate_name(name: str) -> None:
    if not CRON_NAME_RE.match(name):
        raise InvalidCron(
            f"cron entry name {name!r} is invalid: use 1-64 letters, digits, '_', '-', '.', ':'"
        )


# ----------------------------------------------------------------------------------- maths


def _zoned(ms: float, timezone: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone))


def fire_times(expression: str, timezone: str, now_ms: int) -> tuple[int, int]:
    """(most recent fire time <= now, next fire time > now), in epoch ms. Fires fall on whole
    seconds; evaluating half a millisecond past ``now`` counts a fire at exactly ``now`` as
    passed (croniter excludes its start from both directions)."""
    base = _zoned(now_ms + 0.5, timezone)
    prev = croniter(expression, base).get_prev(datetime)
    nxt = croniter(expression, base).get_next(datetime)
    return round(prev.timestamp() * 1000), round(nxt.timestamp() * 1000)


def next_fire_times(expression: str, timezone: str, now_ms: int, count: int = 5) -> list[int]:
    it = croniter(expression, _zoned(now_ms + 0.5, timezone))
    return [round(it.get_next(datetime).timestamp() * 1000) for _ in range(count)]


def interval_ms(expression: str, timezone: str, now_ms: int) -> int:
    """The time between the fire before ``now_ms`` and the one after it (at least a minute)."""
    prev_ms, next_ms = fire_times(expression, timezone, now_ms)
    return max(next_ms - prev_ms, MIN_INTERVAL_MS)


def _fixed_hours(expression: str) -> bool:
    hour = expression.split()[1]
    return not hour.startswith("*")


def _wall_clock(ms: int, timezone: str) -> datetime:
    return _zoned(ms, timezone).replace(tzinfo=None)


def repeated_wall_clock(expression: str, timezone: str, fire_ms: int, last_ms: int) -> bool:
    """True for the second of two fires at the same local time: the repeated hour of a
    fall-back day, which a fixed-hour entry skips."""
    return (
        _fixed_hours(expression)
        and fire_ms - last_ms <= 2 * 3_600_000
        and _wall_clock(fire_ms, timezone) == _wall_clock(last_ms, timezone)
    )


def is_orphaned(data: Mapping[str, Any], now_ms: int) -> bool:
    """Declared by no scheduler for longer than its interval (an entry stored before
    ``declared_ms`` existed is not judged)."""
    declared = data.get("declared_ms")
    if not isinstance(declared, int):
        return False
    return now_ms - declared > interval_ms(data["expression"], data.get("timezone", "UTC"), now_ms)


def sleep_s(result: CronPass, max_sleep_s: float) -> float:
    """How long a scheduler sleeps after a pass: until just past the earliest next fire, at
    most ``max_sleep_s`` (times are on the Redis clock; only their difference is used)."""
    if result.next_due_ms is None:
        return max_sleep_s
    return min(max(result.next_due_ms - result.now_ms + WAKE_SLACK_MS, 0) / 1000, max_sleep_s)


# ------------------------------------------------------------------------------- storage


def _entry_json(entry: CronDef, declared_ms: int) -> str:
    return json.dumps({**asdict(entry), "declared_ms": declared_ms}, sort_keys=True, default=str)


def _load_entries(raw: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    entries = {}
    for name, text in raw.items():
        try:
            data = json.loads(text)
            validate_cron(data["expression"], data.get("timezone", "UTC"))
            entries[name] = data
        except (ValueError, KeyError, TypeError, InvalidCron):
            continue  # a malformed entry written by hand is skipped, never fatal
    return entries


def _load_state(name: str, text: str | None) -> dict[str, Any]:
    """An entry's state; a corrupt one (written by hand) is logged and started afresh, so one
    bad entry never stops the others from firing."""
    if text is None:
        return {}
    try:
        st = json.loads(text)
    except ValueError:
        st = None
    if not isinstance(st, dict):
        log.warning("cron entry %s: its state %.80r is not a JSON object; starting it afresh", name, text)
        return {}
    return st


def _record_run(
    st: dict[str, Any], fire_ms: int, task_id: str, queue: str, *, manual: bool, startup: bool = False
) -> None:
    if not (manual or startup):
        st["last_fire_ms"] = fire_ms
    st.update(last_task_id=task_id, last_queue=queue)
    runs = [r for r in st.get("runs", []) if r.get("task_id") != task_id]
    run = {"fire_ms": fire_ms, "task_id": task_id, "queue": queue, "manual": manual, "startup": startup}
    st["runs"] = [run, *runs][:RUNS_KEPT]


def register(settings: Settings, entry: CronDef, now_ms: int | None = None) -> Op[None]:
    """Store an entry (validated) so every scheduler and the console see it, stamped as
    declared now (an entry nobody declares for longer than its interval is orphaned)."""
    validate_name(entry.name)
    validate_cron(entry.expression, entry.timezone)
    if now_ms is None:
        now_ms = yield from ops.server_time_ms()
    yield cmd("HSET", settings.keyspace.cron, entry.name, _entry_json(entry, now_ms))


def unregister(settings: Settings, name: str) -> Op[bool]:
    ks = settings.keyspace
    removed, _, _ = yield Batch(
        [cmd("HDEL", ks.cron, name), cmd("HDEL", ks.cron_state, name), cmd("DEL", ks.cron_startup(name))]
    )
    return bool(removed)


def set_paused(settings: Settings, name: str, paused: bool) -> Op[bool]:
    ks = settings.keyspace
    raw = yield cmd("HGET", ks.cron_state, name)
    exists = yield cmd("HEXISTS", ks.cron, name)
    if not exists:
        return False
    st = _load_state(name, raw)
    st["paused"] = paused
    yield cmd("HSET", ks.cron_state, name, json.dumps(st))
    return True


# ---------------------------------------------------------------------------------- ticks


def _defaults_of(declarations: Mapping[str, Declaration]) -> dict[str, dict[str, Any]]:
    return {
        t: dict(queue=d.queue, priority=d.priority, max_retry=d.max_retry, timeout=d.timeout)
        for t, d in declarations.items()
    }


def _queue_options(data: Mapping[str, Any], task_defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The type's declared defaults; the entry's own queue wins."""
    options = dict(task_defaults.get(data["task_type"], {}))
    if data.get("queue"):
        options["queue"] = data["queue"]
    return options


def _cron_task(
    name: str,
    data: Mapping[str, Any],
    task_defaults: Mapping[str, Mapping[str, Any]],
    task_id: str,
    metadata: dict[str, str],
) -> Task | None:
    """The task one run of an entry enqueues; None (logged) when the stored entry cannot make
    one (a payload or queue written by hand): that entry is skipped, the others still fire."""
    try:
        return build_task(
            data["task_type"],
            data.get("payload"),
            id=task_id,
            metadata=metadata,
            **_queue_options(data, task_defaults),
        )
    except (InvalidTask, PayloadError) as exc:
        log.warning("cron entry %s: cannot make its task: %s", name, exc)
        return None


def _enqueue(settings: Settings, task: Task) -> Op[bool]:
    (result,) = yield from ops.enqueue_many(settings, [task])
    return result.created


def scheduler_pass(
    settings: Settings,
    declared: Sequence[CronDef],
    task_defaults: Mapping[str, Mapping[str, Any]],
    *,
    now_ms: int | None = None,
    stamp: bool = True,
    startup: bool = False,
    alive_ms: int = FLEET_ALIVE_MS,
) -> Op[CronPass]:
    """One scheduler pass: fire every entry whose tick came due since its last fire.

    ``declared``: the entries this scheduler's code declares (stamped when ``stamp``; their
    ``run_at_startup`` markers kept alive); ``startup``: this scheduler's first pass, which
    fires the ``run_at_startup`` entries unless another scheduler is alive; ``now_ms``: the
    clock to evaluate against (tests); default the Redis clock; ``alive_ms``: how long a
    ``run_at_startup`` marker outlives this pass (longer than the time to the next pass)."""
    ks = settings.keyspace
    if now_ms is None:
        now_ms = yield from ops.server_time_ms()
    if stamp:
        for entry in declared:
            yield from register(settings, entry, now_ms)
    at_startup = [e.name for e in declared if e.run_at_startup]
    markers = [
        cmd("SET", ks.cron_startup(name), now_ms, "PX", alive_ms, *(("NX",) if startup else ()))
        for name in at_startup
    ]
    raw, state, *marked = yield Batch([cmd("HGETALL", ks.cron), cmd("HGETALL", ks.cron_state), *markers])
    first_alive = {name for name, reply in zip(at_startup, marked, strict=True) if startup and reply}
    created: list[str] = []
    next_due: int | None = None
    for name, data in _load_entries(raw).items():
        st = _load_state(name, state.get(name))
        if st.get("paused"):
            continue
        tz = data.get("timezone", "UTC")
        orphaned = is_orphaned(data, now_ms)
        if orphaned != bool(st.get("orphaned")):
            st["orphaned"] = orphaned
            yield cmd("HSET", ks.cron_state, name, json.dumps(st))
        if orphaned:
            continue
        prev_ms, next_ms = fire_times(data["expression"], tz, now_ms)
        next_due = next_ms if next_due is None else min(next_due, next_ms)
        changed = False
        startup_task = None
        if name in first_alive:
            startup_task = _cron_task(
                name, data, task_defaults, f"cron-{name}-startup-{now_ms}", {"cron": name, "startup": "1"}
            )
        if startup_task is not None:
            if (yield from _enqueue(settings, startup_task)):
                created.append(startup_task.id)
            _record_run(st, now_ms, startup_task.id, startup_task.queue, manual=False, startup=True)
            changed = True
        last = st.get("last_fire_ms")
        if last is None:  # first sight: start from here, do not fire the past tick
            st["last_fire_ms"] = prev_ms
            yield cmd("HSET" if name in state or changed else "HSETNX", ks.cron_state, name, json.dumps(st))
            continue
        if prev_ms <= int(last):
            if changed:
                yield cmd("HSET", ks.cron_state, name, json.dumps(st))
            continue
        if repeated_wall_clock(data["expression"], tz, prev_ms, int(last)):
            st["last_fire_ms"] = prev_ms  # the repeated 01:30 of a fall-back day: already fired
            yield cmd("HSET", ks.cron_state, name, json.dumps(st))
            continue
        task = _cron_task(
            name, data, task_defaults, f"cron-{name}-{prev_ms}", {"cron": name, "fire_ms": str(prev_ms)}
        )
        if task is None:
            st["last_fire_ms"] = prev_ms  # this tick is spent: warn once per tick, not every pass
        else:
            if (yield from _enqueue(settings, task)):
                created.append(task.id)
            _record_run(st, prev_ms, task.id, task.queue, manual=False)
        yield cmd("HSET", ks.cron_state, name, json.dumps(st))
    return CronPass(now_ms=now_ms, created=created, next_due_ms=next_due)


def tick_op(
    settings: Settings,
    registry_entries: Sequence[CronDef],
    task_defaults: Mapping[str, Mapping[str, Any]],
    now_ms: int | None = None,
) -> Op[list[str]]:
    """One scheduler pass stamping ``registry_entries``; the ids of the tasks it created."""
    result = yield from scheduler_pass(settings, registry_entries, task_defaults, now_ms=now_ms)
    return result.created


async def tick(backend: AsyncBackend, settings: Settings, source: CronSource) -> list[str]:
    declared = list(source.crons.values())
    return await backend.run(tick_op(settings, declared, _defaults_of(source.declarations())))


async def run_scheduler(
    backend: AsyncBackend,
    settings: Settings,
    source: CronSource,
    running: Callable[[], bool],
    max_sleep_s: float = 5.0,
) -> None:
    """A worker's scheduler loop: a pass, then sleep until the earliest next fire (at most
    ``max_sleep_s``), while ``running()``. A failed pass (Redis away) is logged and retried
    after ``max_sleep_s``; its ``run_at_startup`` decision waits for the first pass that works."""
    startup = True
    stamped_at: float | None = None
    # a marker must outlive the longest sleep between two passes, or a worker starting in
    # that gap would take the fleet for stopped
    alive_ms = max(FLEET_ALIVE_MS, int(3 * max_sleep_s * 1000))
    clock = asyncio.get_running_loop().time  # the loop's clock: a harness may run it virtual
    while running():
        stamp = stamped_at is None or (clock() - stamped_at) * 1000 >= DECLARE_EVERY_MS
        declared = list(source.crons.values())
        defaults = _defaults_of(source.declarations())
        try:
            result = await backend.run(
                scheduler_pass(settings, declared, defaults, stamp=stamp, startup=startup, alive_ms=alive_ms)
            )
        except RediqError as exc:
            log.warning("cron pass deferred: %s", exc)
            await asyncio.sleep(max_sleep_s)
            continue
        startup = False
        if stamp:
            stamped_at = clock()
        await asyncio.sleep(sleep_s(result, max_sleep_s))


# ------------------------------------------------------------------------- manual control


def run_now(
    settings: Settings, name: str, task_defaults: Mapping[str, Mapping[str, Any]] | None = None
) -> Op[str]:
    """Fire an entry now, outside its schedule (its regular ticks are unaffected)."""
    ks = settings.keyspace
    raw, state_raw = yield Batch([cmd("HGET", ks.cron, name), cmd("HGET", ks.cron_state, name)])
    entries = _load_entries({name: raw} if raw else {})
    if name not in entries:
        raise InvalidCron(f"no cron entry named {name!r}", fix="List entries with `rediq cron list`")
    now_ms = yield from ops.server_time_ms()
    task = build_task(  # errors are the caller's: an operator asked for this run
        entries[name]["task_type"],
        entries[name].get("payload"),
        id=f"cron-{name}-manual-{now_ms}",
        metadata={"cron": name, "manual": "1"},
        **_queue_options(entries[name], task_defaults or {}),
    )
    yield from _enqueue(settings, task)
    st = _load_state(name, state_raw) or {"last_fire_ms": now_ms}
    _record_run(st, now_ms, task.id, task.queue, manual=True)
    yield cmd("HSET", ks.cron_state, name, json.dumps(st))
    return task.id


# -------------------------------------------------------------------------------- listing


def list_entries(settings: Settings) -> Op[list[CronEntryInfo]]:
    """Registered cron entries with their next fire times and last runs."""
    ks = settings.keyspace
    now_ms = yield from ops.server_time_ms()
    raw, state = yield Batch([cmd("HGETALL", ks.cron), cmd("HGETALL", ks.cron_state)])
    entries = _load_entries(raw)
    states = {name: _load_state(name, state[name]) for name in entries if name in state}
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
                bool(r.get("startup")),
            )
            for r in st.get("runs", [])
        )
        fires = next_fire_times(data["expression"], tz, now_ms)
        declared = data.get("declared_ms")
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
                declared_ms=declared if isinstance(declared, int) else None,
                next_fires=tuple(fires),
                runs=runs,
                run_at_startup=bool(data.get("run_at_startup")),
            )
        )
    return out
