"""Flow control across the fleet: a queue's rate limit, enforced on the Redis clock.

A limit is ``rate`` tasks per ``period`` with up to ``burst`` at once, kept as GCRA in the
queue's hash ``QueueKeys.rate_limit``; ``dequeue.lua`` leases no more tasks than it allows, so
it holds for any number of workers on any number of hosts (see ``rate_allowance`` in
``_lib.lua``, which ``bucket_state`` mirrors for reading). Declared in code
(``Registry.rate_limit``: a worker writes it at start unless an operator set one) and changed at
run time (``rediq queues limit``, the console), each change audited by ``engine.admin``.
A handler's ``RateLimited(retry_after)`` pauses the bucket for everyone (``throttle.lua``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.backend import Batch, Op, cmd
from engine.errors import InvalidLimit
from engine.ops import Settings, server_time_ms

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(ms|s|m|h)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
MAX_RATE = 1_000_000
MAX_PERIOD_MS = 86_400_000
MAX_PAUSE_S = 86_400.0
"""The longest pause a handler's ``RateLimited`` may ask for (a day)."""
FIX = "Write the limit as N/period with N a whole number > 0, e.g. 50/s, 600/m, 5/10s, 1000/h"


class LimitSource(StrEnum):
    """Who set a queue's limit: the app's code (written by every worker at start) or an
    operator (kept over the code's until cleared)."""

    CODE = "code"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate: int
    """Tasks per period."""
    period_ms: int
    burst: int = 1
    """How many may start at once after a quiet spell (the bucket's size)."""

    def __str__(self) -> str:
        unit = {1000: "s", 60_000: "m", 3_600_000: "h"}.get(self.period_ms)
        per = unit if unit else f"{self.period_ms / 1000:g}s"
        return f"{self.rate}/{per}" + (f" burst {self.burst}" if self.burst > 1 else "")

    @property
    def interval_ms(self) -> float:
        return self.period_ms / self.rate


def parse_limit(spec: str, burst: int | None = None) -> RateLimit:
    """``"50/s"``, ``"600/m"``, ``"5/10s"``, ``"100/250ms"``, ``"1000/h"``; ``burst`` defaults to 1.
    Raises ``InvalidLimit`` (one line naming the fix) for anything else, zero or negative."""
    m = _SPEC.match(spec)
    if not m:
        raise InvalidLimit(f"rate limit {spec!r} is not N/period", fix=FIX)
    count, amount, unit = int(m.group(1)), m.group(2), m.group(3)
    try:
        scale = float(amount) if amount else 1.0
    except ValueError:
        raise InvalidLimit(f"rate limit {spec!r} has an unreadable period", fix=FIX) from None
    period_ms = round(scale * _UNIT_MS[unit])
    return validated(RateLimit(count, period_ms, 1 if burst is None else burst))


def validated(limit: RateLimit) -> RateLimit:
    if not 0 < limit.rate <= MAX_RATE:
        raise InvalidLimit(f"rate limit of {limit.rate} per period: must be 1..{MAX_RATE}", fix=FIX)
    if not 0 < limit.period_ms <= MAX_PERIOD_MS:
        raise InvalidLimit(f"rate limit period of {limit.period_ms} ms: must be 1 ms .. 1 day", fix=FIX)
    if not 1 <= limit.burst <= MAX_RATE:
        raise InvalidLimit(
            f"burst of {limit.burst}: must be 1..{MAX_RATE}",
            fix="Pass --burst with a whole number >= 1 (how many tasks may start at once)",
        )
    return limit


def validated_pause(retry_after: float) -> float:
    if not (isinstance(retry_after, int | float) and 0 < retry_after <= MAX_PAUSE_S):
        raise InvalidLimit(
            f"retry_after={retry_after!r}: must be > 0 and at most {MAX_PAUSE_S:g} s",
            fix="Raise RateLimited(retry_after=SECONDS) with the remote side's Retry-After",
        )
    return float(retry_after)


@dataclass(frozen=True, slots=True)
class BucketState:
    """A queue's limit and its bucket as of ``now_ms`` (the Redis clock)."""

    limit: RateLimit | None
    source: LimitSource | None
    tokens: int
    """Tokens that could go now (0 while paused)."""
    next_token_ms: int
    """0 when a token is free now; else ms until the next one."""
    paused_ms: int
    """ms left of a pause a handler's ``RateLimited`` asked for (0: none)."""


def bucket_state(fields: dict[str, Any], now_ms: int) -> BucketState:
    """The bucket read from the hash's fields, as ``rate_allowance`` in ``_lib.lua`` sees it."""
    hold = _num(fields.get("until")) or 0.0
    paused = max(0, math.ceil(hold - now_ms))
    limit = _limit_of(fields)
    try:
        source: LimitSource | None = LimitSource(fields.get("src", ""))
    except ValueError:
        source = None
    if limit is None:
        return BucketState(None, source, 0, paused, paused)
    interval = limit.interval_ms
    tat = max(_num(fields.get("tat")) or float(now_ms), float(now_ms))
    free = math.floor((now_ms + limit.burst * interval - tat) / interval + 1e-9)
    wait = 0 if free >= 1 else max(1, math.ceil(tat + interval - limit.burst * interval - now_ms))
    if paused:
        return BucketState(limit, source, 0, max(paused, wait), paused)
    return BucketState(limit, source, max(0, free), wait, 0)


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _limit_of(fields: dict[str, Any]) -> RateLimit | None:
    rate, period, burst = _num(fields.get("rate")), _num(fields.get("period")), _num(fields.get("burst"))
    if rate is None or period is None or rate <= 0 or period <= 0:
        return None
    return RateLimit(int(rate), int(period), max(1, int(burst or 1)))


def _bucket_key(settings: Settings, queue: str, task_type: str | None) -> str:
    qk = settings.keyspace.queue(queue)
    return qk.rate_limit if task_type is None else qk.type_rate(task_type)


def read_bucket(settings: Settings, queue: str, task_type: str | None = None) -> Op[BucketState]:
    """The queue's limit, or with ``task_type`` that type's own limit in the queue."""
    fields = yield cmd("HGETALL", _bucket_key(settings, queue, task_type))
    now = yield from server_time_ms()
    return bucket_state(dict(fields or {}), now)


def write_limit(
    settings: Settings, queue: str, limit: RateLimit, source: LimitSource, task_type: str | None = None
) -> Op[None]:
    """Set a queue's limit, or with ``task_type`` that type's own limit in the queue (its
    bucket's state is kept: a change takes effect at once, without handing out a fresh burst).
    Withdraws the queue's hand-off registrations: a worker that registered before the limit
    would otherwise be handed tasks past it by enqueues."""
    qk = settings.keyspace.queue(queue)
    limit = validated(limit)
    marker = [] if task_type is None else [cmd("HSET", qk.type_limits, task_type, "1")]
    yield Batch(
        [
            *marker,
            cmd(
                "HSET",
                _bucket_key(settings, queue, task_type),
                "rate",
                limit.rate,
                "period",
                limit.period_ms,
                "burst",
                limit.burst,
                "src",
                source.value,
            ),
            cmd("DEL", qk.idle),
        ]
    )


def clear_limit(settings: Settings, queue: str, task_type: str | None = None) -> Op[bool]:
    """Remove a queue's limit (and any pause a handler asked for), or one type's own limit.
    True when there was one."""
    if task_type is not None:
        yield cmd("HDEL", settings.keyspace.queue(queue).type_limits, task_type)
    removed = yield cmd("DEL", _bucket_key(settings, queue, task_type))
    return bool(removed)


def declare_limits(settings: Settings, limits: dict[tuple[str, str | None], RateLimit]) -> Op[list[str]]:
    """A worker's start: write the limits its app declares (per queue, or per task type of a
    queue), except where an operator set one (that one stays until cleared). Returns what kept
    an operator's limit ('queue' or 'queue type')."""
    kept = []
    for (queue, task_type), limit in limits.items():
        src = yield cmd("HGET", _bucket_key(settings, queue, task_type), "src")
        if src == LimitSource.OPERATOR.value:
            kept.append(queue if task_type is None else f"{queue} {task_type}")
        else:
            yield from write_limit(settings, queue, limit, LimitSource.CODE, task_type)
    return kept


# ---------------------------------------------------------------------------------- concurrency groups

ANY_GROUP = "*"
"""The group limit that applies to every group of the queue without its own entry."""
MAX_GROUP_LIMIT = 100_000


def validated_group_limit(group: str, limit: int) -> int:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_GROUP_LIMIT:
        raise InvalidLimit(
            f"group limit {limit!r}: must be a whole number 1..{MAX_GROUP_LIMIT}",
            fix="Give K, the most tasks of one group that may run at once, e.g. 2",
        )
    if not group or len(group) > 128 or any(c.isspace() or c in "|{}" for c in group):
        raise InvalidLimit(
            f"group {group!r} is invalid",
            fix="Name the group as tasks carry it (1..128 characters, no spaces, '|' or braces) or *",
        )
    return limit


def write_group_limit(
    settings: Settings, queue: str, group: str, limit: int, only_if_unset: bool = False
) -> Op[bool]:
    """Set the most tasks of ``group`` (``*``: any group) of ``queue`` that hold a lease at once.
    With ``only_if_unset`` (a worker writing its app's declaration) an existing entry is kept."""
    validated_group_limit(group, limit)
    key = settings.keyspace.queue(queue).cgroup_limits
    written = yield cmd("HSETNX" if only_if_unset else "HSET", key, group, limit)
    return bool(written)


def clear_group_limit(settings: Settings, queue: str, group: str) -> Op[bool]:
    removed = yield cmd("HDEL", settings.keyspace.queue(queue).cgroup_limits, group)
    return bool(removed)


@dataclass(frozen=True, slots=True)
class GroupState:
    group: str
    limit: int | None
    """None: the group has no limit (neither its own nor ``*``)."""
    holding: int
    """Tasks of the group holding a live lease now."""


def read_group(settings: Settings, queue: str, group: str) -> Op[GroupState]:
    qk = settings.keyspace.queue(queue)
    now = yield from server_time_ms()
    own, default, holding = yield Batch(
        [
            cmd("HGET", qk.cgroup_limits, group),
            cmd("HGET", qk.cgroup_limits, ANY_GROUP),
            cmd("ZCOUNT", qk.cgroup(group), f"({now}", "+inf"),
        ]
    )
    limit = _num(own) if own is not None else _num(default)
    return GroupState(group, None if limit is None else int(limit), int(holding or 0))


BACKLOG_SAMPLE = 1000
"""Pending tasks read from the head of a queue to find its busiest groups (bounded cost)."""
TOP_GROUPS = 10


@dataclass(frozen=True, slots=True)
class GroupBacklog:
    queue: str
    group: str
    pending: int
    """Tasks of the group among the first ``BACKLOG_SAMPLE`` pending of the queue."""
    holding: int
    """Tasks of the group holding a live lease now."""
    limit: int | None


def group_backlogs(
    settings: Settings, queues: list[str], sample: int = BACKLOG_SAMPLE, top: int = TOP_GROUPS
) -> Op[list[GroupBacklog]]:
    """Per queue, its ``top`` groups by pending tasks among the first ``sample`` pending (a
    bounded read however long the queue: labels and rows stay bounded too)."""
    now = yield from server_time_ms()
    out: list[GroupBacklog] = []
    for queue in queues:
        qk = settings.keyspace.queue(queue)
        ids = yield cmd("ZRANGE", qk.pending, 0, sample - 1)
        if not ids:
            continue
        groups = yield Batch([cmd("HGET", qk.task(i), "grp") for i in ids])
        counts: dict[str, int] = {}
        for group in groups:
            if group:
                counts[group] = counts.get(group, 0) + 1
        busiest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        if not busiest:
            continue
        replies = yield Batch(
            [cmd("HGET", qk.cgroup_limits, ANY_GROUP)]
            + [
                c
                for g, _ in busiest
                for c in (cmd("HGET", qk.cgroup_limits, g), cmd("ZCOUNT", qk.cgroup(g), f"({now}", "+inf"))
            ]
        )
        default = _num(replies[0])
        for n, (group, pending) in enumerate(busiest):
            own, holding = replies[1 + 2 * n], replies[2 + 2 * n]
            limit = _num(own) if own is not None else default
            out.append(
                GroupBacklog(queue, group, pending, int(holding or 0), None if limit is None else int(limit))
            )
    return out


MAX_FAIR_WEIGHT = 1024
"""A group's weight: its share of a round against weight-1 groups (``FAIR_UNIT`` in _lib.lua)."""


def validated_weight(group: str, weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_FAIR_WEIGHT:
        raise InvalidLimit(
            f"fair weight {weight!r} of group {group!r} is invalid",
            fix=f"Give each group a whole weight from 1 to {MAX_FAIR_WEIGHT} (1: an equal share)",
        )
    return weight


def write_fair(
    settings: Settings, queue: str, weights: dict[str, int] | None = None, only_if_unset: bool = False
) -> Op[bool]:
    """Make ``queue`` fair between its groups (round-robin, weighted by ``weights``; ``*``: the
    default weight, tasks without a group are group ''). Tasks pending before keep their place:
    the virtual clock starts at the queue's sequence (``fair_tag`` in _lib.lua). With
    ``only_if_unset`` (a worker writing its app's declaration) an operator's setting stays."""
    key = settings.keyspace.queue(queue).fair
    if only_if_unset and (yield cmd("EXISTS", key)):
        return False
    fields: list[Any] = ["on", "1"]
    for group, weight in (weights or {}).items():
        if group != "":
            validated_group_limit(group, 1)  # the group's name
        fields += ["w:" + group, validated_weight(group, weight)]
    yield cmd("HSET", key, *fields)
    return True


def clear_fair(settings: Settings, queue: str) -> Op[bool]:
    """Back to FIFO within each priority: new tasks take the sequence again."""
    removed = yield cmd("DEL", settings.keyspace.queue(queue).fair)
    return bool(removed)


@dataclass(frozen=True, slots=True)
class FairState:
    on: bool
    weights: dict[str, int]
    groups_with_backlog: int
    """Groups with a tag still ahead of the clock (tasks queued: their last tag is kept)."""


def read_fair(settings: Settings, queue: str) -> Op[FairState]:
    raw = yield cmd("HGETALL", settings.keyspace.queue(queue).fair)
    fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
    weights = {k[2:]: int(v) for k, v in fields.items() if k.startswith("w:") and v.isdigit()}
    backlog = sum(1 for k in fields if k.startswith("t:"))
    return FairState(fields.get("on") == "1", weights, backlog)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
