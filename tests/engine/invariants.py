"""No lost work: every task is in exactly one state structure and its hash agrees.

Tests may SCAN (the engine never does): we look for task hashes that belong to no state."""

from __future__ import annotations

from collections import defaultdict

import redis

from engine.task import TaskState

STATE_SETS = [str(s) for s in TaskState]
FINISHED = {"completed", "dead", "cancelled", "expired"}


def _text(value: object) -> str:
    """A reply item as text, from a client with or without decode_responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def check_invariants(r: redis.Redis, prefix: str = "rediq") -> list[str]:
    """Return a list of violations (empty when the store is consistent)."""
    problems: list[str] = []
    queues = sorted(r.smembers(f"{prefix}:queues"))
    for q in queues:
        q = q if isinstance(q, str) else q.decode()
        base = f"{prefix}:{{{q}}}:"
        where: dict[str, list[str]] = defaultdict(list)
        for state in STATE_SETS:
            for member in r.zrange(base + state, 0, -1):
                where[_text(member)].append(state)
        for task_id, states in where.items():
            if len(states) > 1:
                problems.append(f"{q}/{task_id} is in several states: {states}")
                continue
            state = states[0]
            stored = r.hget(base + "t:" + task_id, "state")
            stored = stored.decode() if isinstance(stored, bytes) else stored
            if stored is None:
                if state not in FINISHED:  # finished hashes expire by TTL before the index is trimmed
                    problems.append(f"{q}/{task_id} is in {state} but its hash is gone")
            elif stored != state:
                problems.append(f"{q}/{task_id} is in the {state} set but its hash says {stored}")
            if state == "active" and stored == "active" and not r.hget(base + "t:" + task_id, "lease"):
                problems.append(f"{q}/{task_id} is active without a lease")
        for key in r.scan_iter(match=(base + "t:*").replace("{", "\\{").replace("}", "\\}"), count=1000):
            key = key if isinstance(key, str) else key.decode()
            task_id = key[len(base) + 2 :]
            if task_id not in where:
                hashed = r.hget(key, "state")
                problems.append(f"{q}/{task_id} has a hash (state {hashed!r}) but is in no state set")
    return problems


LIVE = ("pending", "scheduled", "waiting", "active", "retry")


def check_unique_keys(r: redis.Redis, prefix: str = "rediq") -> list[str]:
    """Return violations of "one live task per unique key": two tasks alive (pending,
    scheduled, waiting, active or retrying) with the same unique key."""
    problems: list[str] = []
    for q in sorted(r.smembers(f"{prefix}:queues")):
        q = q if isinstance(q, str) else q.decode()
        base = f"{prefix}:{{{q}}}:"
        holders: dict[str, list[str]] = defaultdict(list)
        for state in LIVE:
            for member in r.zrange(base + state, 0, -1):
                member = member.decode() if isinstance(member, bytes) else str(member)
                key = r.hget(base + "t:" + member, "unique")
                key = key.decode() if isinstance(key, bytes) else key
                if key:
                    holders[key].append(member)
        for key, ids in sorted(holders.items()):
            if len(ids) > 1:
                problems.append(f"{q}: unique key {key!r} is held by {len(ids)} live tasks: {sorted(ids)}")
    return problems
