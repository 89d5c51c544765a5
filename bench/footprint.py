"""Where rediq's Redis footprint goes: server commands, server CPU and AOF bytes per task.

``python -m bench.footprint [--n 2000] [--rate 200] [--lib rediq]`` starts a private Valkey with
``appendonly yes`` (no rewrites during the run), and measures two workloads of the bench's
"commands" kind, one library call per enqueue, one worker (the bench adapter's configuration):

- backlog: N tasks enqueued first, then one worker drains them;
- trickle: a running worker, tasks enqueued one at a time at ``--rate`` per second.

For each it prints ``INFO commandstats`` calls per task by command name (every command inside
Lua counted), the server CPU per task (commandstats usec, and ``INFO cpu`` user+sys), and the
AOF growth per task. Exact counts are machine-independent; CPU figures move with the load.

``--idle SECONDS`` measures instead what one idle worker costs the server: a worker of each
library in ``--lib`` (comma-separated), after 20 tasks, left with nothing to do for that long;
commands, AOF bytes and Valkey CPU per second.
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
from bench.runner import enqueue_paced, start_workers, stop_workers, wait_count
from bench.server import Valkey
from engine.display import visible


class AofValkey(Valkey):
    """The bench's Valkey with the append-only file on (``everysec``) and automatic rewrites off."""

    def __init__(self) -> None:
        super().__init__(appendfsync="everysec")

    def aof_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_dir.rglob("*.aof"))

    def aof_tail(self, total_before: int) -> bytes:
        """What the AOF gained since it held ``total_before`` bytes (no rewrite in between:
        the growth is the tail of the newest incremental file)."""
        newest = max(self.data_dir.rglob("*.incr.aof"), key=lambda p: p.stat().st_mtime)
        grown = self.aof_bytes() - total_before
        data = newest.read_bytes()
        return data[len(data) - grown :] if grown > 0 else b""


def aof_records(tail: bytes) -> list[tuple[list[bytes], int]]:
    """Each command of an AOF tail (RESP arrays as Valkey writes them) and its size in bytes."""
    out: list[tuple[list[bytes], int]] = []
    pos = 0
    while pos < len(tail) and tail[pos : pos + 1] == b"*":
        start = pos
        end = tail.index(b"\r\n", pos)
        argc = int(tail[pos + 1 : end])
        pos = end + 2
        args = []
        for _ in range(argc):
            end = tail.index(b"\r\n", pos)
            size = int(tail[pos + 1 : end])
            args.append(tail[end + 2 : end + 2 + size])
            pos = end + 2 + size + 2
        out.append((args, pos - start))
    return out


def aof_by_command(tail: bytes) -> dict[str, int]:
    """Bytes of the AOF per command name."""
    out: dict[str, int] = {}
    for args, size in aof_records(tail):
        key = args[0].decode(errors="replace").lower()
        out[key] = out.get(key, 0) + size
    return out


def render_records(tail: bytes) -> str:
    """One line per AOF command: its bytes and the command (escaped, long arguments cut)."""
    lines = []
    for args, size in aof_records(tail):
        shown = " ".join(visible(a.decode(errors="backslashreplace"), 60) for a in args)
        lines.append(f"{size:5d}  {visible(shown, 240)}")
    return "\n".join(lines)


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


def measure(
    lib: str, server: AofValkey, mode: str, n: int, rate: float, records: bool = False
) -> dict[str, Any]:
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
            # the client's first script call loads the function library (written to the AOF
            # once per server, not per task): one task before measuring, then its keys go
            adapter.enqueue_each([0.0])
            warm = direct.keys("*{bench}*")  # (none for a library whose keys are named otherwise)
            if warm:
                direct.delete(*warm)
            base = 0
        _settle(direct, server)
        s0, cpu0 = _stats(direct)
        aof0 = server.aof_bytes()
        if mode == "trickle":
            enqueue_paced(adapter, n, rate)
        else:
            adapter.enqueue_each([0.0] * n)
            workers = start_workers(lib, server.url, 1)
        done = wait_count(base + n, time.perf_counter() + 120)[0] - base
        time.sleep(0.5)  # the last acks
        _settle(direct, server)
        s1, cpu1 = _stats(direct)
        aof1 = server.aof_bytes()
        tail = server.aof_tail(aof0)
        aof_split = aof_by_command(tail)
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
        "aof_by_command": {k: v / n for k, v in sorted(aof_split.items(), key=lambda kv: -kv[1])},
        "aof_records": render_records(tail) if records else "",
    }


def measure_idle(lib: str, server: AofValkey, seconds: float) -> dict[str, Any]:
    """What one idle worker of ``lib`` costs the server per second (after 20 tasks)."""
    direct = redis.Redis(port=server.port)
    direct.flushall()
    record.setup(latency_slots=1)
    adapter = load(lib, server.url)
    workers = start_workers(lib, server.url, 1)
    try:
        adapter.enqueue_each([0.0] * 20)
        wait_count(20, time.perf_counter() + 30)
        time.sleep(3.0)  # the last acks, and the worker's loops back to their idle pace
        # (an idle worker may write all the time: the AOF's everysec lag is the same at both ends)
        s0, cpu0 = _stats(direct)
        aof0, t0 = server.aof_bytes(), time.perf_counter()
        time.sleep(seconds)
        s1, cpu1 = _stats(direct)
        aof1, t1 = server.aof_bytes(), time.perf_counter()
    finally:
        stop_workers(workers)
        adapter.close()
    span = t1 - t0
    per: dict[str, float] = {}
    for name, (calls, _us) in s1.items():
        c0 = s0.get(name, (0, 0))[0]
        if name not in ("info",) and calls > c0:
            per[name] = (calls - c0) / span
    return {
        "lib": lib,
        "seconds": round(span, 1),
        "cmds_per_s": sum(per.values()),
        "by_command": dict(sorted(per.items(), key=lambda kv: -kv[1])),
        "aof_bytes_per_s": (aof1 - aof0) / span,
        "cpu_ms_per_s": (cpu1 - cpu0) * 1e3 / span,
    }


def render_idle(results: list[dict[str, Any]]) -> str:
    lines = [
        "| one idle worker | commands/s | AOF bytes/s | Valkey CPU ms/s | commands (per second) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(r["by_command"].items())[:8])
        figures = f"{r['cmds_per_s']:.1f} | {r['aof_bytes_per_s']:.0f} | {r['cpu_ms_per_s']:.2f}"
        lines.append(f"| {r['lib']} | {figures} | {top} |")
    return "\n".join(lines)


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
    lines += ["", "| AOF bytes/task by command | " + " | ".join(r["mode"] for r in results) + " |"]
    lines.append("|---" * (len(results) + 1) + "|")
    aof_names: list[str] = []
    for r in results:
        aof_names += [k for k in r["aof_by_command"] if k not in aof_names]
    for name in aof_names:
        lines.append(
            f"| {name} | " + " | ".join(f"{r['aof_by_command'].get(name, 0):.1f}" for r in results) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lib", default="rediq")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--records",
        action="store_true",
        help="also print every AOF command of each workload (use a small --n)",
    )
    p.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="measure an idle worker of each --lib (comma-separated) for this long instead",
    )
    args = p.parse_args(argv)
    if args.idle:
        idle_server = AofValkey()
        with idle_server:  # (as idle_server: typed as the base class's Valkey)
            idle = [measure_idle(lib, idle_server, args.idle) for lib in args.lib.split(",")]
        print(render_idle(idle))
        if args.json:
            args.json.write_text(json.dumps(idle, indent=2))
        return 0
    server = AofValkey()
    with server:  # (as server: typed as the base class's Valkey)
        results = [
            measure(args.lib, server, mode, args.n, args.rate, args.records)
            for mode in ("backlog", "trickle")
        ]
    print(render(results))
    for r in results if args.records else []:
        print(f"\nAOF commands, {r['mode']} ({r['n']} task(s), bytes and command):\n{r['aof_records']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
