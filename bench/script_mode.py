"""FCALL (function library) vs EVALSHA on rediq's hot path.

    python bench/script_mode.py --repeat 5

On a private Valkey (loopback, persistence off), per run and per mode, in alternating order:

- ``enqueue``: one ``Client.enqueue`` per task (one round trip each), µs per task;
- ``dequeue+ack``: one ``dequeue`` of 1 task, then one ``ack`` (two round trips), µs per task;
- ``dequeue+ack x10``: ``dequeue`` of 10, one ``ack`` of 10 (a worker's batch), µs per task;
- ``server µs/call``: Valkey's own ``usec_per_call`` of FCALL or EVALSHA over the run (the
  script's execution inside the server, without the network).

The two modes run in alternating blocks (A B, B A, …) on one server, so load from other
processes on the machine hits both alike; printed: each mode's median over the runs with its
range, and the median of the per-run ratio FCALL / EVALSHA with its range.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from engine.backend import SyncBackend  # noqa: E402
from engine.client import Client  # noqa: E402
from engine.connection import parse_url  # noqa: E402
from engine.lua import ScriptMode  # noqa: E402
from engine.worker import protocol
from tests.servers import ServerProcess, free_port  # noqa: E402

FIGURES = ("enqueue", "dequeue+ack", "dequeue+ack x10", "server us/call")


def _client(url: str, mode: ScriptMode) -> Client:
    client = Client(parse_url(url))
    client.backend = SyncBackend(client.backend.redis, script_mode=mode)
    client.backend.ensure_scripts()
    return client


def one_run(url: str, raw: redis.Redis, mode: ScriptMode, n: int) -> dict[str, float]:
    raw.flushall()
    client = _client(url, mode)
    settings, backend = client.settings, client.backend
    client.enqueue("warm", None, queue="warm")  # connection open, scripts loaded
    raw.config_resetstat()
    out: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(n):
        client.enqueue("bench", i, queue="b")
    out["enqueue"] = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        jobs = protocol.parse_dequeue(
            "b", backend.execute(protocol.dequeue_call(settings, "b", 1, 30_000, "bench"))
        )
        backend.execute(protocol.ack_call(settings, "b", [(j.id, j.token, "") for j in jobs]))
    out["dequeue+ack"] = (time.perf_counter() - started) / n * 1e6
    for i in range(n):
        client.enqueue("bench", i, queue="c")
    started = time.perf_counter()
    for _ in range(n // 10):
        jobs = protocol.parse_dequeue(
            "c", backend.execute(protocol.dequeue_call(settings, "c", 10, 30_000, "bench"))
        )
        backend.execute(protocol.ack_call(settings, "c", [(j.id, j.token, "") for j in jobs]))
    out["dequeue+ack x10"] = (time.perf_counter() - started) / n * 1e6
    stats = raw.info("commandstats")
    name = "cmdstat_fcall" if mode is ScriptMode.FUNCTIONS else "cmdstat_evalsha"
    out["server us/call"] = float(stats[name]["usec_per_call"])
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = ServerProcess(port=free_port(), extra_args=["--maxmemory-policy", "noeviction"]).start()
    raw = redis.Redis(port=server.port)
    results: dict[ScriptMode, list[dict[str, float]]] = {m: [] for m in ScriptMode}
    try:
        for run in range(args.repeat):
            order = list(ScriptMode) if run % 2 == 0 else list(reversed(ScriptMode))
            for mode in order:
                results[mode].append(one_run(server.url, raw, mode, args.tasks))
    finally:
        raw.close()
        server.cleanup()
    fcall, evalsha = ScriptMode.FUNCTIONS, ScriptMode.EVAL
    print(f"{args.tasks} tasks per figure and run, {args.repeat} runs per mode: median [min–max]")
    print(f"{'figure':<18}{'FCALL':>26}{'EVALSHA':>26}{'FCALL / EVALSHA':>26}")
    for figure in FIGURES:
        cells = []
        for mode in (fcall, evalsha):
            values = [r[figure] for r in results[mode]]
            cells.append(f"{statistics.median(values):.1f} µs [{min(values):.1f}–{max(values):.1f}]")
        ratios = [a[figure] / b[figure] for a, b in zip(results[fcall], results[evalsha], strict=True)]
        cells.append(f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]")
        print(f"{figure:<18}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
