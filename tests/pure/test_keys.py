"""Every key name, spelled out: the layout in docs/architecture.md, and what the Lua scripts
build from a queue's base. A renamed key is a data migration, so a change here must be deliberate."""

from __future__ import annotations

import pytest

from engine.keys import DEFAULT_PREFIX, Keyspace, validate_prefix, validate_queue_name


def test_queue_keys() -> None:
    qk = Keyspace("app").queue("pay.v2")
    assert qk.base == "app:{pay.v2}:"
    fixed = {
        "pending": qk.pending,
        "active": qk.active,
        "scheduled": qk.scheduled,
        "retry": qk.retry,
        "waiting": qk.waiting,
        "dead": qk.dead,
        "completed": qk.completed,
        "cancelled": qk.cancelled,
        "quarantined": qk.quarantine,
        "expired": qk.expired,
        "expiries": qk.expiries,
        "paused": qk.paused,
        "seq": qk.seq,
        "depoutbox": qk.dep_outbox,
        "events": qk.events,
        "failures": qk.failures,
        "idle": qk.idle,
    }
    assert {name: key for name, key in fixed.items()} == {name: f"app:{{pay.v2}}:{name}" for name in fixed}
    assert qk.stat("p", 29_000_000) == "app:{pay.v2}:stats:p:29000000"
    per_item = {
        qk.inbox("w1"): "inbox:w1",
        qk.receipt("w1"): "receipt:w1",
        qk.task("t1"): "t:t1",
        qk.history("t1"): "h:t1",
        qk.log("t1"): "log:t1",
        qk.dependents("t1"): "dependents:t1",
        qk.deps("t1"): "deps:t1",
        qk.fingerprint("ab12"): "fp:ab12",
        qk.runtimes("order:pay"): "rt:order:pay",
        qk.unique("k"): "unique:k",
        qk.state_key("dead"): "dead",
    }
    assert {k: v for k, v in per_item.items()} == {f"app:{{pay.v2}}:{v}": v for v in per_item.values()}


def test_global_keys_live_outside_every_queue_slot() -> None:
    ks = Keyspace()
    assert ks.prefix == DEFAULT_PREFIX == "rediq"
    assert (ks.queues, ks.workers, ks.worker("h:1:x"), ks.cron, ks.cron_state, ks.audit) == (
        "rediq:queues",
        "rediq:workers",
        "rediq:worker:h:1:x",
        "rediq:cron",
        "rediq:cronstate",
        "rediq:audit",
    )
    assert ks.cron_fire("nightly", 1700) == "rediq:cronfire:nightly:1700"
    assert ks.events_pattern == "rediq:{*}:events"
    assert ks.queue("a") is ks.queue("a")  # cached: key objects are built once per queue


@pytest.mark.parametrize("name", ["a", "A-z_0.9:x", "q" * 64])
def test_valid_queue_names(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "q" * 65, "a b", "a{b}", "é", "a\nb", "a/b"])
def test_invalid_queue_names(name: str) -> None:
    with pytest.raises(ValueError, match="use 1-64 letters"):
        validate_queue_name(name)


@pytest.mark.parametrize("prefix", ["rediq", "app:v2", "x", "XX-app"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "a{b", "}", "a b", "tab\there"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError) as err:
        validate_prefix(prefix)
    assert str(err.value) == (
        f"key prefix {prefix!r} is invalid: use a non-empty prefix without spaces or braces "
        "(braces would put every queue in one Cluster slot)"
    )
