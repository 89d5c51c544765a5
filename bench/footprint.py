"""Where rediq's Redis footprint goes: server commands, server CPU and AOF bytes per task.

``python -m bench.footprint [--n 2000] [--rate 200] [--lib rediq]`` starts a private Valkey with
``appendonly yes`` (no rewrites during the run), and measures two workloads of the bench's
"commands" kind, one library call per enqueue, one worker (the bench adapter's configuration):

- backlog: N tasks enqueued first, then one worker drains them;
- trickle: a running worker, tasks enqueued one at a time at ``--rate`` per second.

For each it prints ``INFO commandstats`` calls per task by command name (every command inside
Lua counted), the server CPU per task (commandstats usec, and ``INFO cpu`` user+sys), and the
AOF growth per task. Exact counts are machine-independent; CPU figures move with the load.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import redis

from bench import record
from bench.libs import load
from bench.runner import start_workers, stop_workers, wait_count
from bench.server import Valkey


class AofValkey(Valkey):
    """The bench's Valkey with the append-only file on and automatic rewrites off."""

    def start(self) -> AofValkey:
        super().start()
        r = redis.Redis(port=self.port)
        r.config_set("auto-aof-rewrite-percentage", 0)
        r.config_set("appendfsync", "everysec")
        r.config_set("appendonly", "yes")
        deadline = time.monotonic() + 10
        while r.info("persistence").get("aof_rewrite_in_progress") and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def aof_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_dir.rglob("*.aof"))


def _stats(r: redis.Redis) -> tuple[dict[str, tuple[int, int]], float]:
    stats = r.info("commandstats")
    cpu = r.info("cpu")
    calls = {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _settle(r: redis.Redis, server: AofValkey) -> None:
    """Wait until the AOF stops growing (everysec: the last second's writes reach the file)."""
    last, stable = -1, 0
    deadline = time.monotonic() + 5
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(0.4)
        size = server.aof_bytes()
        stable = stable + 1 if size == last else 0
        last = size


def measure(lib: str, server: AofValkey, mode: str, n: int, rate: float) -> dict[str, Any]:
    direct = redis.Redis(port=server.port)
    direct.flushall()
    _settle(direct, server)
    record.setup(latency_slots=1)
    adapter = load(lib, server.url)
    workers = []
    try:
        if mode == "trickle":
            workers = start_workers(lib, server.url, 1)
            adapter.enqueue_each([0.0] * 20)  # warm-up: the worker is up and registered
            wait_count(20, time.perf_counter() + 30)
            time.sleep(0.5)
            base = 20
        else:
            base = 0
        _settle(direct, server)
        s0, cpu0 = _stats(direct)
        aof0 = server.aof_bytes()
        if mode == "trickle":
            t0 = time.perf_counter()
            for i in range(n):
                wait = t0 + i / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                adapter.enqueue_each([0.0])
        else:
            adapter.enqueue_each([0.0] * n)
            workers = start_workers(lib, server.url, 1)
        done = wait_count(base + n, time.perf_counter() + 120)[0] - base
        time.sleep(0.5)  # the last acks
        _settle(direct, server)
        s1, cpu1 = _stats(direct)
        aof1 = server.aof_bytes()
    finally:
        stop_workers(workers)
        adapter.close()
    per: dict[str, float] = {}
    usec = 0
    for name, (calls, us) in s1.items():
        c0, u0 = s0.get(name, (0, 0))
        if name in ("info", "config|set", "flushall") or calls == c0:
            continue
        per[name] = (calls - c0) / n
        usec += us - u0
    return {
        "mode": mode,
        "n": n,
        "done": done,
        "cmds_per_task": sum(per.values()),
        "by_command": dict(sorted(per.items(), key=lambda kv: -kv[1])),
        "cmd_usec_per_task": usec / n,
        "cpu_usec_per_task": (cpu1 - cpu0) * 1e6 / n,
        "aof_bytes_per_task": (aof1 - aof0) / n,
    }


def render(results: list[dict[str, Any]]) -> str:
    names: list[str] = []
    for r in results:
        names += [k for k in r["by_command"] if k not in names]
    lines = ["| command | " + " | ".join(r["mode"] for r in results) + " |"]
    lines.append("|---" * (len(results) + 1) + "|")
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(f"{r['by_command'].get(name, 0):.2f}" for r in results) + " |"
        )
    for key, label in (("cmds_per_task", "**total commands/task**"),
                       ("cmd_usec_per_task", "commandstats µs/task"),
                       ("cpu_usec_per_task", "Valkey CPU µs/task (user+sys)"),
                       ("aof_bytes_per_task", "AOF bytes/task")):  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:.1f}" for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lib", default="rediq")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    with AofValkey() as server:
        results = [measure(args.lib, server, mode, args.n, args.rate) for mode in ("backlog", "trickle")]
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
