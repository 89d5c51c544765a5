"""The floor of a per-task record's Redis footprint: what the writes rediq's contract needs per
task (a record, a FIFO pending index, a lease, a completion kept for the retention) cost in the
AOF and in server commands, with today's field names and with a compact record.

``python -m bench.record_floor [--n 2000]`` starts a private Valkey with ``appendonly yes``,
then for each variant enqueues N tasks one call each, leases them ten at a time and completes
them ten at a time, with plain commands in ``MULTI`` blocks (as a script's writes reach the
AOF), and prints AOF bytes and commands per task. What rediq writes beside these (the arrivals
counter, the dequeue receipt, the hand-off registration, the scripts' reads and ``TIME``) is
left out: ``python -m bench.footprint`` measures rediq itself.

Variants:

- ``today``: the fields rediq's scripts write today (``enqueue.lua``, ``dequeue.lua``,
  ``ack.lua``), 32-hex-digit ids;
- ``compact``: one-letter field names; no ``id`` (the key holds it), no ``due`` unless
  scheduled, no ``attempts`` 0, no ``entered``/``v`` (a schema version in the key prefix), no
  priority, retries or timeout equal to the defaults;
- ``compact, 22-char ids``: the same with 128-bit ids in base 62.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import redis

from bench.footprint import AofValkey, _settle

Ids = Callable[[], str]
DEFAULT_ID: Ids = lambda: os.urandom(16).hex()  # noqa: E731 - engine.task.new_task_id
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def short_id() -> str:
    n = int.from_bytes(os.urandom(16), "big")
    out = []
    for _ in range(22):
        n, d = divmod(n, 62)
        out.append(ALPHABET[d])
    return "".join(out)


Fields = dict[str, str | int]


def _hset(pipe: Any, key: str, fields: Fields) -> None:
    pipe.execute_command("HSET", key, *(x for kv in fields.items() for x in kv))


def _today(now: int, task_id: str, seq: int) -> Fields:
    return {"id": task_id, "type": "noop", "payload": '{"ts":0.0}', "priority": 50, "max_retry": 3,
            "timeout": 1800000, "enq": now, "due": now, "state": "pending", "attempts": 0, "v": 1,
            "entered": "pending", "seq": seq}  # fmt: skip


def _compact(now: int, task_id: str, seq: int) -> Fields:
    return {"t": "noop", "p": '{"ts":0.0}', "e": now, "s": "p", "q": seq}


VARIANTS: dict[str, tuple[Callable[[int, str, int], Fields], Ids, dict[str, str]]] = {
    # record at enqueue; the fields a lease and a completion write, by their names in the variant
    "today": (_today, DEFAULT_ID, {"state": "state", "attempts": "attempts", "started": "started",
                                   "worker": "worker", "lease": "lease", "dlv": "dlv",
                                   "finished": "finished", "active": "active",
                                   "completed": "completed"}),
    "compact": (_compact, DEFAULT_ID, {"state": "s", "attempts": "a", "started": "b", "worker": "w",
                                       "lease": "l", "dlv": "d", "finished": "f", "active": "a",
                                       "completed": "c"}),
    "compact, 22-char ids": (_compact, short_id, {"state": "s", "attempts": "a", "started": "b",
                                                  "worker": "w", "lease": "l", "dlv": "d",
                                                  "finished": "f", "active": "a", "completed": "c"}),
}  # fmt: skip


def measure(server: AofValkey, name: str, n: int) -> dict[str, Any]:
    record_of, new_id, f = VARIANTS[name]
    r = redis.Redis(port=server.port)
    r.flushall()
    _settle(r, server)
    base, worker = "rediq:{bench}:", "vm:28268:2bc596"
    aof0 = server.aof_bytes()
    commands = 0
    ids = []
    for i in range(n):  # one enqueue call per task: record, sequence, pending index
        now = int(time.time() * 1000)
        task_id = new_id()
        ids.append(task_id)
        pipe = r.pipeline(transaction=True)
        seq = i + 1
        pipe.incrby(base + "seq", 1)
        _hset(pipe, base + "t:" + task_id, record_of(now, task_id, seq))
        pipe.zadd(base + "pending", {task_id: 50 * 2**40 + seq})
        pipe.execute()
        commands += 3
    for start in range(0, n, 10):  # a dequeue leases ten, an ack completes ten
        batch = ids[start : start + 10]
        now = int(time.time() * 1000)
        pipe = r.pipeline(transaction=True)
        pipe.zpopmin(base + "pending", len(batch))
        for task_id in batch:
            lease: Fields = {f["state"]: f["active"], f["attempts"]: 1, f["started"]: now,
                             f["worker"]: worker, f["lease"]: now + 30000, f["dlv"]: 1}  # fmt: skip
            _hset(pipe, base + "t:" + task_id, lease)
        pipe.zadd(base + "active", {t: now + 30000 for t in batch})
        pipe.execute()
        pipe = r.pipeline(transaction=True)
        for task_id in batch:
            _hset(pipe, base + "t:" + task_id, {f["state"]: f["completed"], f["finished"]: now})
            pipe.pexpire(base + "t:" + task_id, 86_400_000)
        pipe.zrem(base + "active", *batch)
        pipe.zadd(base + "completed", {t: now for t in batch})
        pipe.execute()
        commands += 2 + len(batch) + 2 + 2 * len(batch)
    _settle(r, server)
    aof1 = server.aof_bytes()
    per_task = {"aof_bytes_per_task": (aof1 - aof0) / n, "commands_per_task": commands / n}
    return {"variant": name, "n": n, **per_task}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    args = p.parse_args(argv)
    server = AofValkey()
    with server:  # (as server: typed as the base class's Valkey)
        results = [measure(server, name, args.n) for name in VARIANTS]
    print("| variant | AOF bytes/task | commands/task |")
    print("|---|---|---|")
    for res in results:
        print(f"| {res['variant']} | {res['aof_bytes_per_task']:.0f} | {res['commands_per_task']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
