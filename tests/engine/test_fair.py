"""Fair scheduling between the groups of one queue on real Valkey, through the scripts (no
worker): a big group's backlog delays a newcomer's task by at most one round, weights give
shares, priority still wins, and re-entries (retry, release, requeue) go to the back of their
own group's line instead of ahead of everyone."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import flow
from engine.client import Client
from engine.errors import InvalidLimit
from engine.registry import Registry
from engine.task import Task
from tests.engine.test_cli import invoke, invoke_json, run_cli
from tests.engine.test_queue_semantics import fail, lease


def fill(client: Client, queue: str, group: str | None, n: int, priority: int = 50) -> list[str]:
    tasks = [Task(type="t", payload=i, queue=queue, group=group, priority=priority) for i in range(n)]
    return [r.id for r in client.enqueue_many(tasks)]


def test_a_newcomer_is_leased_within_one_round_behind_a_big_backlog(client: Client) -> None:
    client.run(flow.write_fair(client.settings, "fq"))
    fill(client, "fq", "big", 10_000)
    (small,) = fill(client, "fq", "small", 1)
    got = [j.id for j in lease(client, "fq", n=1) + lease(client, "fq", n=1)]
    assert small in got  # 2 groups: within the first 2 leases, not after 10,000
    state = client.run(flow.read_fair(client.settings, "fq"))
    assert state.on and state.groups_with_backlog == 1  # 'small' emptied: its tag is gone


def test_without_fair_the_newcomer_waits_behind_the_backlog(client: Client) -> None:
    fill(client, "pq", "big", 50)
    (small,) = fill(client, "pq", "small", 1)
    assert small not in [j.id for j in lease(client, "pq", n=50)]


def test_weights_give_shares_of_each_round(client: Client) -> None:
    client.run(flow.write_fair(client.settings, "wq", {"a": 3}))
    ids_a = set(fill(client, "wq", "a", 60))
    fill(client, "wq", "b", 60)
    a = sum(1 for j in lease(client, "wq", n=40) if j.id in ids_a)
    assert 29 <= a <= 31  # 3 : 1


def test_priority_still_wins_over_fairness(client: Client) -> None:
    client.run(flow.write_fair(client.settings, "pr"))
    fill(client, "pr", "big", 20, priority=50)
    (urgent,) = fill(client, "pr", "big", 1, priority=10)
    assert lease(client, "pr", n=1)[0].id == urgent


def test_a_retry_goes_to_the_back_of_its_own_groups_line(client: Client) -> None:
    client.run(flow.write_fair(client.settings, "rq"))
    ids_a = set(fill(client, "rq", "a", 3))
    ids_b = set(fill(client, "rq", "b", 3))
    first = lease(client, "rq", n=1)[0]  # a or b: the first round's tags tie, ties go by id
    mine = ids_a if first.id in ids_a else ids_b
    fail(client, first)  # retry now (no delay): promoted by the next dequeue
    got = [j.id for j in lease(client, "rq", n=10)]
    order = ["mine" if i in mine else "other" for i in got]
    # the other group's first, then one of each a round, then the retry: its group's line's back
    assert order[0] == "other" and sorted(order[1:3]) == sorted(order[3:5]) == ["mine", "other"]
    assert got[-1] == first.id


def test_a_bad_weight_is_refused_with_the_fix(client: Client) -> None:
    with pytest.raises(InvalidLimit, match="fair weight"):
        client.run(flow.write_fair(client.settings, "bq", {"a": 0}))
    assert not client.run(flow.read_fair(client.settings, "bq")).on


def test_clear_fair_returns_to_fifo(client: Client) -> None:
    client.run(flow.write_fair(client.settings, "cq"))
    assert client.run(flow.clear_fair(client.settings, "cq"))
    fill(client, "cq", "big", 5)
    (small,) = fill(client, "cq", "small", 1)
    assert [j.id for j in lease(client, "cq", n=6)][-1] == small


def test_the_cli_turns_fair_on_with_weights_and_off_audited(redis_url: str, tmp_path: Path) -> None:
    shown = invoke_json(redis_url, "queue", "fair", "imports", "--on", "--weight", "customer:1=3")
    assert shown == {"queue": "imports", "fair": True, "weights": {"customer:1": 3}, "groups": 0}
    assert (
        "fair: 0 groups with backlog (weights customer:1=3)"
        in invoke(redis_url, "queue", "fair", "imports").stdout
    )
    result = run_cli("--redis-url", redis_url, "queue", "fair", "imports", "--weight", "a=0", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("E017: ") and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert invoke_json(redis_url, "queue", "fair", "imports", "--off")["fair"] is False
    entries = invoke_json(redis_url, "audit", "--limit", "5")
    assert [(e["action"], e["detail"]) for e in entries[:2]] == [("fair", "off"), ("fair", "on customer:1=3")]


def test_the_registry_declares_a_fair_queue_and_refuses_a_bad_weight() -> None:
    registry = Registry()
    registry.fair("imports", {"customer:1": 3})
    assert registry.fair_queues == {"imports": {"customer:1": 3}}
    with pytest.raises(InvalidLimit, match="fair weight"):
        registry.fair("imports", {"a": 2000})
