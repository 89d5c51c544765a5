"""Table-driven tests of the Lua scripts: a case is a small picture of the queue before (task
hashes, the state set each task sits in, a few other keys), one script call made exactly as the
engine makes it (the first request of the ``ops``/``doctor``/``testing`` operation, sent through
``SyncBackend``), the reply, and the picture after.

Only the first request of an operation runs: the follow-ups some operations send (``cancel``
flushing the dependency outbox, ``restore`` re-registering dependencies) have tables of their
own, so each case shows what one script does and nothing else.

Times: a field value or score written ``"now"``, ``"now+N"`` or ``"now-N"`` (N in ms) is
relative to the server clock when the case starts; ``RECENT`` in an expectation means "a server
time taken during the call".
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis

from engine.backend import Call, Op, SyncBackend
from engine.ops import Settings

Q = "q"
SETTINGS = Settings(prefix="lt")
QK = SETTINGS.keyspace.queue(Q)
BASE = QK.base

STATE_SETS = (
    "pending",
    "active",
    "scheduled",
    "retry",
    "waiting",
    "dead",
    "completed",
    "cancelled",
    "quarantined",
)
"""The per-state sorted sets of a queue (a task hash's ``state`` names the one it belongs in)."""

FUTURE = "now+3600000"
PAST = "now-3600000"
HOUR_MS = 3_600_000


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ANY = _Sentinel("ANY")
"""Expectation: the field or key is present, with any value."""
ABSENT = _Sentinel("ABSENT")
"""Expectation: the field or key is not there."""
RECENT = _Sentinel("RECENT")
"""Expectation: a server time in ms taken during the call."""


@dataclass(frozen=True)
class Later:
    """Expectation: a server time taken during the call plus ``ms`` (a lease, a due time)."""

    ms: int


@dataclass(frozen=True)
class Json:
    """Expectation: a JSON text that decodes to ``value`` (an inbox record, a receipt)."""

    value: Any


@dataclass(frozen=True)
class Parts:
    """Expectation: a text of ':'-separated parts, each matched in turn (a hand-off
    registration ``free:deadline:lease``, a deferral's ``since:attempts``)."""

    parts: tuple[Any, ...]


@dataclass(frozen=True)
class H:
    """A hash key (a queue's hand-off registrations, its failure groups): field -> value; in
    an expectation, exactly these fields (values matched as elsewhere: ANY, RECENT...)."""

    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Z:
    """A sorted set: members with scores (a score of None means "any score" in an expectation)."""

    members: Mapping[str, Any]


@dataclass(frozen=True)
class TTL:
    """Expectation on a key's expiry: ``True`` it has one, ``False`` it is persistent."""

    expires: bool
    at_most_ms: int | None = None
    """With an expiry: the PTTL is at most this (a ``keep_result`` shorter than the retention)."""
    at_least_ms: int | None = None
    """With an expiry: the PTTL is more than this (kept longer than a short ``keep_result``)."""


@dataclass
class Case:
    name: str
    before: dict[str, dict[str, Any]]
    """Task id -> hash fields. The task sits in the set its ``state`` names (see ``places``)."""
    reply: Any
    after: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Task id -> fields expected (ABSENT: not there; ANY: there); None: the hash is gone.
    Unless ``places_after`` says otherwise, the task must sit in exactly the set of its state
    after (the ``state`` given here, else its state before), or in none when its hash is gone."""
    ids: tuple[str, ...] = ("a",)
    places: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Task id -> the state sets it sits in before, when not the one its state names."""
    places_after: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keys: dict[str, Any] = field(default_factory=dict)
    """Other keys before, named relative to the queue's base: str -> string, set -> set,
    list -> list, Z -> sorted set (a score "now-…" style or a number)."""
    keys_after: dict[str, Any] = field(default_factory=dict)
    """Other keys after: a value as in ``keys`` (a Z compares members, and scores given),
    ABSENT, or a TTL."""
    scores_after: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(state set, task id) -> expected score."""
    expiring: tuple[str, ...] = ()
    """Keys (relative to the base) given an hour's TTL before the call, as a finished task's."""
    args: dict[str, Any] = field(default_factory=dict)
    """Extra arguments for the module's call builder."""
    sent: int = 1
    """How many times the call is sent: a copy sent again after a lost reply must get the first
    copy's answer (every reply is checked against ``reply``) and change nothing more."""


_TIME = re.compile(r"^now([+-]\d+)?$")


def resolve(value: Any, now: int) -> Any:
    if isinstance(value, str):
        m = _TIME.match(value)
        if m:
            return str(now + int(m.group(1) or 0))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def server_now(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _default_score(fields: Mapping[str, Any], state: str) -> Any:
    if state in ("scheduled", "retry"):
        return fields.get("due", "now")
    if state == "active":
        return fields.get("lease", FUTURE)
    return "now"


def load(r: redis.Redis, case: Case, now: int) -> None:
    for task_id, fields in case.before.items():
        if fields:
            r.hset(QK.task(task_id), mapping={k: resolve(v, now) for k, v in fields.items()})
        state = fields.get("state")
        where = case.places.get(task_id, (state,) if state in STATE_SETS else ())
        for s in where:
            r.zadd(QK.state_key(s), {task_id: float(resolve(_default_score(fields, s), now))})
    for name, value in case.keys.items():
        key = BASE + name
        if isinstance(value, Z):
            r.zadd(key, {m: float(resolve(s, now)) for m, s in value.members.items()})
        elif isinstance(value, set | frozenset):
            r.sadd(key, *value)
        elif isinstance(value, list):
            r.rpush(key, *value)
        elif isinstance(value, H):
            r.hset(key, mapping={k: resolve(v, now) for k, v in value.fields.items()})
        else:
            r.set(key, resolve(value, now))
    for name in case.expiring:
        r.pexpire(BASE + name, HOUR_MS)


def _matches(actual: Any, expected: Any, lo: int, hi: int) -> bool:
    if expected is ANY:
        return actual is not None
    if expected is ABSENT:
        return actual is None
    if expected is RECENT:
        return actual is not None and lo <= float(actual) <= hi
    if isinstance(expected, Later):
        return actual is not None and lo + expected.ms <= float(actual) <= hi + expected.ms
    if isinstance(expected, Parts):
        return actual is not None and _matches(str(actual).split(":"), list(expected.parts), lo, hi)
    if isinstance(expected, Json):
        return actual is not None and _matches(json.loads(actual), expected.value, lo, hi)
    if isinstance(expected, str) and _TIME.match(expected):
        return actual is not None and float(actual) == float(resolve(expected, lo))
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and set(actual) == set(expected)
            and all(_matches(actual[k], e, lo, hi) for k, e in expected.items())
        )
    if isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(_matches(a, e, lo, hi) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, int | float) and not isinstance(expected, bool) and actual is not None:
        return float(actual) == float(expected)
    return bool(actual == expected)


def check(r: redis.Redis, case: Case, reply: Any, lo: int, hi: int) -> list[str]:
    """Every difference between the picture after and the case's expectation, one line each."""
    problems: list[str] = []
    if not _matches(reply, case.reply, lo, hi):
        problems.append(f"reply {reply!r}, expected {case.reply!r}")
    for task_id, expected in case.after.items():
        fields = r.hgetall(QK.task(task_id))
        if expected is None:
            if fields:
                problems.append(f"task {task_id}: hash should be gone, has {fields}")
        else:
            if not fields:
                problems.append(f"task {task_id}: hash is gone")
            for name, want in expected.items():
                got = fields.get(name)
                if not _matches(got, want, lo, hi):
                    problems.append(f"task {task_id}: {name}={got!r}, expected {want!r}")
        state = (expected or {}).get("state", case.before.get(task_id, {}).get("state"))
        if expected is None:
            default: tuple[str, ...] = ()
        else:
            default = (state,) if state in STATE_SETS else ()
        want_sets = set(case.places_after.get(task_id, default))
        got_sets = {s for s in STATE_SETS if r.zscore(QK.state_key(s), task_id) is not None}
        if got_sets != want_sets:
            problems.append(f"task {task_id}: in sets {sorted(got_sets)}, expected {sorted(want_sets)}")
    for (state_set, task_id), want in case.scores_after.items():
        score = r.zscore(QK.state_key(state_set), task_id)
        if not _matches(score, want, lo, hi):
            problems.append(f"score of {task_id} in {state_set}: {score!r}, expected {want!r}")
    for name, want in case.keys_after.items():
        key = BASE + name
        if want is ABSENT:
            if r.exists(key):
                problems.append(f"key {name} should be gone")
        elif isinstance(want, TTL):
            ttl = r.pttl(key)
            if (ttl > 0) != want.expires:
                problems.append(f"key {name}: pttl {ttl}, expected {'an' if want.expires else 'no'} expiry")
            elif want.at_most_ms is not None and ttl > want.at_most_ms:
                problems.append(f"key {name}: pttl {ttl}, expected at most {want.at_most_ms}")
            elif want.at_least_ms is not None and ttl <= want.at_least_ms:
                problems.append(f"key {name}: pttl {ttl}, expected more than {want.at_least_ms}")
        elif isinstance(want, H):
            got_h = r.hgetall(key)
            if set(got_h) != set(want.fields):
                problems.append(f"key {name}: fields {sorted(got_h)}, expected {sorted(want.fields)}")
            for hfield, hwant in want.fields.items():
                if hfield in got_h and not _matches(got_h[hfield], hwant, lo, hi):
                    problems.append(f"key {name}: {hfield}={got_h[hfield]!r}, expected {hwant!r}")
        elif isinstance(want, list):
            got_l = r.lrange(key, 0, -1)
            if not _matches(got_l, want, lo, hi):
                problems.append(f"key {name}: {got_l!r}, expected {want!r}")
        elif isinstance(want, Z):
            got_z = dict(cast(list[tuple[str, float]], r.zrange(key, 0, -1, withscores=True)))
            if set(got_z) != set(want.members):
                problems.append(f"key {name}: members {sorted(got_z)}, expected {sorted(want.members)}")
            for member, score in want.members.items():
                if score is not None and member in got_z and not _matches(got_z[member], score, lo, hi):
                    problems.append(f"key {name}: score of {member} {got_z[member]}, expected {score!r}")
        elif isinstance(want, set | frozenset):
            got_s = r.smembers(key)
            if got_s != want:
                problems.append(f"key {name}: {sorted(got_s)}, expected {sorted(want)}")
        else:
            got_v = r.get(key)
            if not _matches(got_v, want, lo, hi):
                problems.append(f"key {name}: {got_v!r}, expected {want!r}")
    return problems


def first_call(op: Op[Any]) -> Call:
    """The script call an operation makes first (what the engine sends for it)."""
    request = next(op)
    assert isinstance(request, Call) and request.script, f"first request is not a script call: {request!r}"
    op.close()
    return request


TIMED_SCRIPTS = ("requeue", "restore", "quarantine", "delete")
"""Bulk scripts whose reply ends with the server CPU time they took (``admin.ChunkSizer``)."""


def without_timing(script: str | None, reply: Any) -> Any:
    """A timed script's reply with its CPU time checked (whole microseconds, -1 where the
    server cannot tell) and taken off, so each table shows what the script did; a reply of
    ``{ids, time}`` becomes the ids."""
    if script not in TIMED_SCRIPTS:
        return reply
    *rest, cpu_us = reply
    assert isinstance(cpu_us, int) and cpu_us >= -1, f"{script}: CPU time {cpu_us!r}"
    return rest[0] if len(rest) == 1 else rest


def run_case(url: str, case: Case, call: Call) -> None:
    r = redis.Redis.from_url(url, decode_responses=True)
    backend = SyncBackend(redis.Redis.from_url(url, decode_responses=True))
    try:
        now = server_now(r)
        load(r, case, now)
        replies = [without_timing(call.script, backend.execute(call)) for _ in range(case.sent)]
        hi = server_now(r)
        problems = check(r, case, replies[0], now, hi)
        for copy, reply in enumerate(replies[1:], start=2):
            if not _matches(reply, case.reply, now, hi):
                problems.append(f"copy {copy} of the call: reply {reply!r}, expected {case.reply!r}")
    finally:
        backend.close()
        r.close()
    assert not problems, f"case {case.name!r}:\n  " + "\n  ".join(problems)


def cases(*table: Case) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize`` over a table, each case named."""
    return pytest.mark.parametrize("case", table, ids=[c.name for c in table])


@contextmanager
def published_events(url: str) -> Iterator[Callable[[], list[tuple[str, str]]]]:
    """Listen to every channel while the block runs. The function it gives returns what was
    published since, in order, as (``'events'`` or ``'arrivals'``: the queue's channel, event
    name); a marker it publishes last bounds the wait (every event published before arrives
    before it)."""
    r = redis.Redis.from_url(url, decode_responses=True)
    listener = r.pubsub()
    listener.psubscribe("*")
    confirmed = listener.get_message(timeout=10)  # subscribed before anything is published
    assert confirmed is not None and confirmed["type"] == "psubscribe", confirmed
    names = {QK.events: "events", QK.arrivals: "arrivals"}

    def published() -> list[tuple[str, str]]:
        r.publish("lt-test-end", "end")
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = listener.get_message(timeout=1)
            if message is None:
                continue
            if message["channel"] == "lt-test-end":
                return seen
            assert message["channel"] in names, message
            seen.append((names[message["channel"]], json.loads(message["data"])["e"]))
        raise AssertionError("the end marker never arrived")

    try:
        yield published
    finally:
        listener.close()
        r.close()
