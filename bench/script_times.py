"""Server time per command on the way from an enqueue to a start, at a paced rate.

``python -m bench.script_times [--rounds 3] [--n 1000] [--rate 200] [--libs rediq,huey]`` starts
a private Valkey and, for each library in turn (interleaved by round), runs one worker and
enqueues ``--n`` no-op tasks one call at a time at ``--rate`` tasks/s, with Valkey's SLOWLOG
recording every command (threshold 0). It prints, per top-level command (an ``FCALL`` named by
its function), the calls per task and the median of the rounds' median µs per call, with the
rounds' range.

What it shows that ``bench.footprint`` does not: the time of each script call as Valkey ran it
(its own calls included) when the server is woken for each task, as at 200/s. Three of them
(enqueue, the worker's ``BLMOVE``, take) lie on the way from an enqueue to a start; the
others (ack, dequeue) run after the handler. Huey's ``LPUSH`` and ``BRPOP`` are the yardstick.
SLOWLOG's clock has 1 µs steps; every figure is for this machine only (indicative).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import Any

import redis

from bench import record
from bench.libs import QUEUE, load
from bench.runner import enqueue_paced, start_workers, stop_workers, wait_count
from bench.server import Valkey

SLOWLOG_MAX = 1_000_000


def _name(command: Any) -> str:
    """``FCALL rediq_<v>_take ...`` -> ``FCALL take``; any other command by its name."""
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    words = text.split()
    if not words:
        return "?"
    head = words[0].upper()
    if head in ("FCALL", "FCALL_RO") and len(words) > 1:
        return f"{head} {words[1].rsplit('_', 1)[-1]}"
    return head


def one_run(lib: str, url: str, n: int, rate: float) -> tuple[dict[str, float], dict[str, float]]:
    """Calls per task and median µs per call of each top-level command, for one library."""
    r = redis.Redis.from_url(url)
    r.flushall()
    record.setup(0)
    adapter = load(lib, url)
    workers = start_workers(lib, url, 1)
    try:
        warm = 20
        adapter.enqueue_each([0.0] * warm)
        if wait_count(warm, time.perf_counter() + 20)[0] < warm:
            raise RuntimeError(f"{lib}: the worker did not start")
        time.sleep(0.2)
        r.config_set("slowlog-max-len", SLOWLOG_MAX)
        r.config_set("slowlog-log-slower-than", 0)
        r.slowlog_reset()
        enqueue_paced(adapter, n, rate)
        wait_count(warm + n, time.perf_counter() + 10)
        time.sleep(0.2)
        r.config_set("slowlog-log-slower-than", 10_000)
        entries = r.slowlog_get(SLOWLOG_MAX)
    finally:
        stop_workers(workers)
        close = getattr(adapter, "close", None)
        if close is not None:
            close()
    durations: dict[str, list[int]] = defaultdict(list)
    for name, duration in top_level(entries):
        if not name.startswith(("SLOWLOG", "CONFIG")):
            durations[name].append(duration)
    calls = {k: len(v) / n for k, v in durations.items()}
    medians = {k: float(statistics.median(v)) for k, v in durations.items()}
    return calls, medians


def top_level(entries: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The commands clients sent, with their durations. SLOWLOG also lists the calls a script
    makes, each before the script's own entry, from the same client, with a duration of 0
    (timed as part of the script): those are left out."""
    out: list[tuple[str, int]] = []
    waiting: dict[Any, list[tuple[str, int]]] = defaultdict(list)  # per client, oldest first
    for entry in sorted(entries, key=lambda e: int(e["id"])):
        name, duration, client = _name(entry["command"]), int(entry["duration"]), entry["client_address"]
        if name.startswith(("FCALL", "EVAL")):
            out += [(k, d) for k, d in waiting.pop(client, []) if d > 0]
            out.append((name, duration))
        else:
            waiting[client].append((name, duration))
    for left in waiting.values():
        out += left
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--libs", default="rediq,huey")
    args = parser.parse_args(argv)
    libs = [x for x in args.libs.split(",") if x]
    per_call: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_task: dict[tuple[str, str], list[float]] = defaultdict(list)
    with Valkey() as server:
        for round_ in range(args.rounds):
            for lib in libs:
                calls, medians = one_run(lib, server.url, args.n, args.rate)
                for name, value in medians.items():
                    per_call[(lib, name)].append(value)
                    per_task[(lib, name)].append(calls[name])
                shown = ", ".join(f"{k} {v:g}" for k, v in sorted(medians.items()))
                print(f"round {round_ + 1} {lib}: {shown}")
    print(f"\nµs per call as Valkey ran it (SLOWLOG), {args.n} tasks at {args.rate:g}/s, queue {QUEUE!r}, "
          f"median (range) of {args.rounds} rounds' medians")  # fmt: skip
    print("| library | command | calls per task | µs per call |")
    print("|---|---|---|---|")
    for (lib, name), values in sorted(per_call.items(), key=lambda kv: (kv[0][0], -statistics.median(kv[1]))):
        per = statistics.median(per_task[(lib, name)])
        if per < 0.05:
            continue
        spread = f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"
        print(f"| {lib} | {name} | {per:.2f} | {spread} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
