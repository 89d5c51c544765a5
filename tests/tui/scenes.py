"""Deterministic data sets for snapshots and screenshots: fixed ids, times planted relative to
the server clock (for ages the server computes) or to ``FIXED_NOW`` (for ages the app computes
with its injected clock), and coarse duration formatting."""

from __future__ import annotations

import json

import redis

from engine import admin
from engine.client import Client
from engine.cron import CronDef
from engine.ops import Settings
from engine.scheduler import register
from tests.tui.data import kill, lease, make_dead, progress
from tests.tui.helpers import FIXED_NOW

KS = Settings().keyspace


def server_ms(raw: redis.Redis) -> int:
    sec, usec = raw.time()
    return int(sec) * 1000 + int(usec) // 1000


def queues_scene(url: str, raw: redis.Redis) -> None:
    with Client(url) as c:
        make_dead(c, "payment", 4)
        for i in range(12):
            c.enqueue("order:payment", {"order_id": i}, queue="payment", id=f"pay-{i:03d}")
        for i in range(3):
            c.enqueue("order:ship", {"order_id": i}, queue="shipping", id=f"ship-{i:03d}", delay=3600)
        for i in range(5):
            c.enqueue("mail:send", {"to": f"user{i}@example.com"}, queue="mail", id=f"mail-{i:03d}")
        c.call(admin.pause, "mail")
    head = server_ms(raw) - (3 * 86400 + 3600) * 1000
    for q, tid in (("payment", "pay-000"), ("mail", "mail-000")):
        raw.hset(KS.queue(q).task(tid), "enq", head)
    # per-minute counters (make_dead's 4 failures, the enqueues) would show as Err/m and inflow
    # when the poll falls in the next minute: the picture must not depend on the clock
    stats = list(raw.scan_iter(KS.prefix + ":{*}:stats:*"))
    if stats:
        raw.delete(*stats)


def tasks_scene(url: str, raw: redis.Redis) -> None:
    with Client(url) as c:
        for i in range(25):
            c.enqueue(
                "order:payment" if i % 3 else "order:refund",
                {"order_id": 1000 + i, "amount": 100 * i, "currency": "EUR"},
                queue="payment",
                id=f"task-{i:03d}",
                priority=10 if i < 3 else 50,
            )
        jobs = lease(c, "payment", 2)
        progress(c, jobs[0], 40, "charging card")
        progress(c, jobs[1], 90, "sending receipt")
    enq = int(FIXED_NOW * 1000) - 3 * 3600 * 1000
    for i in range(25):
        raw.hset(KS.queue("payment").task(f"task-{i:03d}"), "enq", enq)


def workers_scene(url: str, raw: redis.Redis) -> None:
    now = server_ms(raw)
    rows = [
        (
            "w-a",
            "app-1",
            31337,
            "payment,mail",
            8,
            3,
            now - 5 * 86400 * 1000,
            now - 200,
            ["payment|task-001"],
        ),
        ("w-b", "app-2", 4242, "shipping", 4, 0, now - 2 * 3600 * 1000, now - 100, []),
        ("w-c", "app-3", 999, "payment", 8, 8, now - 86400 * 1000, now - 45 * 60 * 1000, ["payment|x-9"]),
    ]
    for wid, host, pid, queues, conc, busy, started, beat, tasks in rows:
        raw.zadd(KS.workers, {wid: beat})
        raw.hset(
            KS.worker(wid),
            mapping={
                "host": host,
                "pid": pid,
                "queues": queues,
                "concurrency": conc,
                "busy": busy,
                "started": started,
                "heartbeat": beat,
                "tasks": json.dumps(tasks),
            },
        )


def cron_scene(url: str, raw: redis.Redis) -> None:
    with Client(url) as c:
        c.run(register(c.settings, CronDef("leap-day-report", "0 0 29 2 *", "report:leap", queue="reports")))
        c.run(register(c.settings, CronDef("new-year-audit", "0 0 1 1 *", "audit:year", queue="audit")))
        c.call(admin.set_cron_paused, "new-year-audit", True)


def detail_scene(url: str, raw: redis.Redis) -> None:
    with Client(url) as c:
        make_dead(c, "payment", 1, prefix="order")
        c.enqueue("order:ship", {"order_id": 1}, queue="shipping", id="ship-001", depends_on=["order-000"])
    key = KS.queue("payment").task("order-000")
    base = int(FIXED_NOW * 1000)
    history = [[base + 2000, "dead", "card declined for order-000"], [base + 1000, "active", "w-test"]]
    raw.hset(key, mapping={"enq": base, "due": base, "started": base + 1000, "finished": base + 2000})
    raw.hdel(key, "entered")  # the planted list below is the whole history: nothing implied
    hist_key = KS.queue("payment").history("order-000")
    raw.delete(hist_key)
    raw.rpush(hist_key, *[json.dumps(h) for h in history])


def failures_scene(url: str, raw: redis.Redis) -> None:
    """Two failure groups in payment (12 and 3 tasks) and one in shipping; the groups' first and
    last failure times are planted relative to ``FIXED_NOW``."""
    with Client(url) as c:
        make_dead(c, "payment", 12)
        for i in range(3):
            c.enqueue("order:payment", {"order_id": i}, queue="payment", id=f"gw-{i:03d}", max_retry=0)
        for i, job in enumerate(lease(c, "payment", 3)):
            kill(c, job, f"ConnectionError: 10.0.0.{i + 7}:6379 refused")
        c.enqueue("order:ship", {"order_id": 1}, queue="shipping", id="ship-001", max_retry=0)
        for job in lease(c, "shipping", 1):
            kill(c, job, "KeyError: 'address'")
    base = int(FIXED_NOW * 1000)
    for q in ("payment", "shipping"):
        key = KS.queue(q).failures
        for n, (fp, value) in enumerate(sorted(raw.hgetall(key).items())):
            data = json.loads(value)
            data["first"] = base - (n + 2) * 3600 * 1000
            data["last"] = base - (n + 1) * 60 * 1000
            raw.hset(key, fp, json.dumps(data))


def audit_scene(url: str, raw: redis.Redis) -> None:
    """Audit entries with planted times and actor (the stream id is the time)."""
    base = int(FIXED_NOW * 1000)
    entries = [
        ("pause", "mail", 1, "", "ops@console-1"),
        ("requeue_all", "payment", 312, "state=dead", "ops@console-1"),
        ("retry_group", "payment", 12, "3f9a2c", "alice@laptop"),
        ("delete_group", "shipping", 1, "b71e0d", "alice@laptop"),
        ("restore", "shipping", 1, "ship-001", "bob@laptop"),
        ("cron_run_now", "", 1, "leap-day-report", "bob@laptop"),
    ]
    for i, (action, queue, count, detail, actor) in enumerate(entries):
        raw.xadd(
            KS.audit,
            {"action": action, "queue": queue, "count": count, "detail": detail, "actor": actor},
            id=f"{base - (len(entries) - i) * 60_000}-0",
        )


def quarantine_scene(url: str, raw: redis.Redis) -> None:
    with Client(url) as c:
        ids = make_dead(c, "payment", 3)
        c.call(admin.delete, "payment", ids)
    enq = int(FIXED_NOW * 1000) - 2 * 3600 * 1000
    for tid in ids:
        raw.hset(KS.queue("payment").task(tid), "enq", enq)


def blocked_scene(url: str, raw: redis.Redis) -> None:
    """A pending task in a paused queue that no worker serves: blocked, with two reasons."""
    with Client(url) as c:
        for i in range(3):
            c.enqueue("mail:send", {"to": f"user{i}@example.com"}, queue="mail", id=f"mail-{i:03d}")
        c.call(admin.pause, "mail")
    base = int(FIXED_NOW * 1000) - 600_000
    for i in range(3):
        raw.hset(KS.queue("mail").task(f"mail-{i:03d}"), mapping={"enq": base, "due": base})
        # the planted list below is the whole history: nothing implied
        raw.hdel(KS.queue("mail").task(f"mail-{i:03d}"), "entered")
    for i in range(3):
        hist_key = KS.queue("mail").history(f"mail-{i:03d}")
        raw.delete(hist_key)
        raw.rpush(hist_key, json.dumps([base, "pending", "enqueued"]))
