"""The checker that runs after every engine test must be able to see loss and corruption."""

from __future__ import annotations

import pytest
import redis

from engine.client import Client
from tests.engine.invariants import check_invariants


@pytest.mark.no_invariants
def test_checker_sees_a_task_in_two_states(client: Client, raw: redis.Redis) -> None:
    r = client.enqueue("t", None, queue="inv")
    assert check_invariants(raw) == []
    raw.zadd("rediq:{inv}:dead", {r.id: 1})
    assert any("several states" in p for p in check_invariants(raw))


@pytest.mark.no_invariants
def test_checker_sees_a_lost_task_and_a_hash_in_no_state(client: Client, raw: redis.Redis) -> None:
    a = client.enqueue("t", None, queue="inv")
    b = client.enqueue("t", None, queue="inv")
    raw.delete(f"rediq:{{inv}}:t:{a.id}")
    raw.zrem("rediq:{inv}:pending", b.id)
    problems = check_invariants(raw)
    assert any(a.id in p and "hash is gone" in p for p in problems)
    assert any(b.id in p and "no state set" in p for p in problems)


@pytest.mark.no_invariants
def test_checker_sees_a_state_mismatch(client: Client, raw: redis.Redis) -> None:
    a = client.enqueue("t", None, queue="inv")
    raw.hset(f"rediq:{{inv}}:t:{a.id}", "state", "active")
    assert any("hash says active" in p for p in check_invariants(raw))
