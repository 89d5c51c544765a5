"""One workload for one library, in a subprocess (possibly another virtualenv's Python).

``python -m bench.runner --lib NAME --workload W --url URL [...]`` prints one JSON object on
its last stdout line. Worker processes are forked from here and report each finished no-op
task through shared memory (``bench.record``); they are killed when the workload ends.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any

import redis

from bench import record
from bench.libs import Adapter, load

WORKLOADS = ("probe", "enqueue", "drain", "latency", "commands")


def flush(url: str) -> None:
    redis.Redis.from_url(url).flushall()


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the runner dies (e.g. killed by the harness's timeout)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_entry(name: str, url: str, supervised: int) -> None:
    os.setpgrp()  # one group per worker: rq's work horses die with it
    _die_with_parent()
    adapter = load(name, url)
    if supervised:
        adapter.worker_supervised(supervised)  # type: ignore[attr-defined]  # rediq only
    else:
        adapter.worker()


def start_workers(name: str, url: str, procs: int, supervised: int = 0) -> list[Any]:
    """``procs`` worker processes; ``supervised`` > 0: one process running rediq's supervisor
    (``rediq-worker --processes``) with that many children instead."""
    ctx = mp.get_context("fork")
    args = (name, url, supervised)
    # a daemonic process may not start children of its own (the supervisor does)
    workers = [ctx.Process(target=_worker_entry, args=args, daemon=not supervised) for _ in range(procs)]
    for w in workers:
        w.start()
    return workers


def stop_workers(workers: list[Any]) -> None:
    for w in workers:
        if w.pid and w.is_alive():
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for w in workers:
        w.join(2)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes and all their descendants, from /proc
    (Linux; 0.0 elsewhere). Workers' CPU per task moves less with the machine's load than
    their rate does."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, cpu seconds)
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    wanted, total = set(pids), 0.0
    for _ in range(4):  # workers, their children (rediq's supervisor), grandchildren
        wanted |= {pid for pid, (ppid, _) in stats.items() if ppid in wanted}
    for pid in wanted:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def server_cpu_seconds(url: str) -> float:
    """CPU time (user + system, all its threads) of the Valkey at ``url`` so far."""
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wait_count(target: int, deadline: float, on_first: Any = None) -> tuple[int, float | None, float | None]:
    """Poll the shared counter until ``target`` tasks finished or the deadline passes; return
    (count, time of first completion, time of last observed increase). ``on_first()`` is
    called at the first completion."""
    first = last = None
    seen = 0
    while True:
        now = time.perf_counter()
        n = record.count()
        if n > seen:
            if first is None:
                first = now
                if on_first is not None:
                    on_first()
            last, seen = now, n
        if n >= target or now > deadline:
            return n, first, last
        time.sleep(0.002)


def enqueue_paced(adapter: Adapter, n: int, rate: float) -> None:
    """``n`` single enqueue calls at ``rate`` per second (a trickle: the server idles between)."""
    t0 = time.perf_counter()
    for i in range(n):
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        adapter.enqueue_each([0.0])


def pre_enqueue(adapter: Adapter, n: int, deadline: float) -> int:
    """Fill the queue with ``n`` tasks the fastest way the library offers."""
    done = 0
    while done < n and time.perf_counter() < deadline:
        chunk = min(1000, n - done)
        if adapter.has_batch:
            adapter.enqueue_batch([0.0] * chunk)
        else:
            adapter.enqueue_each([0.0] * chunk)
        done += chunk
    return done


def w_enqueue(adapter: Adapter, url: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("single", "batch"):
        if mode == "batch" and not adapter.has_batch:
            out["enqueue_batch"] = None
            continue
        flush(url)
        n, t0 = 0, time.perf_counter()
        limit = t0 + args.seconds
        chunk = 100 if mode == "single" else 1000
        target = args.n_enqueue if mode == "single" else args.n_batch
        while n < target and time.perf_counter() < limit:
            if mode == "single":
                adapter.enqueue_each([0.0] * chunk)
            else:
                adapter.enqueue_batch([0.0] * chunk)
            n += chunk
        out[f"enqueue_{mode}"] = n / (time.perf_counter() - t0)
        out[f"enqueue_{mode}_n"] = n
    flush(url)
    return out


def w_drain(adapter: Adapter, url: str, args: argparse.Namespace) -> dict[str, Any]:
    flush(url)
    deadline = time.perf_counter() + args.seconds
    n = pre_enqueue(adapter, args.n, deadline)
    if args.handler:  # read by the adapter in the (forked) worker
        os.environ["BENCH_HANDLER"] = args.handler
    if args.processes and not hasattr(adapter, "worker_supervised"):
        return {"error": f"{args.lib} has no supervisor (--processes) variant"}
    started = time.perf_counter()
    workers = start_workers(args.lib, url, 1 if args.processes else args.procs, args.processes)
    pids = [w.pid for w in workers]
    # (tasks done, worker CPU seconds, Valkey CPU seconds) at the first and the last completion
    cpu: list[tuple[int, float, float]] = []

    def mark() -> None:
        cpu.append((record.count(), cpu_seconds(pids), server_cpu_seconds(url)))

    try:
        count, first, last = wait_count(n, time.perf_counter() + args.seconds, mark)
        mark()
    finally:
        stop_workers(workers)
    rate = (count - 1) / (last - first) if first is not None and last is not None and last > first else 0.0
    # a tiny run (--smoke) can finish between two polls of a loaded machine: then the only
    # interval there is runs from the workers' start (start-up included; said in the result)
    from_start = rate == 0.0 and count > 0 and last is not None
    if from_start and last is not None:
        rate = count / (last - started)
    procs = args.processes or args.procs
    done = cpu[-1][0] - cpu[0][0] if len(cpu) == 2 else 0
    cpu_us = (cpu[-1][1] - cpu[0][1]) / done * 1e6 if done > 0 else None
    server_us = (cpu[-1][2] - cpu[0][2]) / done * 1e6 if done > 0 else None
    # cores the drain kept busy (workers and Valkey): on a machine with C cores, more worker
    # processes can add at most C / busy of this rate (issue 20 point 1b)
    busy = (cpu_us + server_us) * rate / 1e6 if cpu_us is not None and server_us is not None else None
    return {
        "drain": rate,
        "drained": count,
        "enqueued": n,
        "procs": procs,
        "complete": count >= n,
        "timed_from_start": from_start,
        "worker_cpu_us": cpu_us,
        "server_cpu_us": server_us,
        "cores_busy": busy,
    }


def w_latency(adapter: Adapter, url: str, args: argparse.Namespace) -> dict[str, Any]:
    flush(url)
    workers = start_workers(args.lib, url, 1)
    try:
        warm = 20
        t_end = time.perf_counter() + args.seconds
        for _ in range(warm):
            adapter.enqueue_each([0.0])
        if wait_count(warm, t_end + 20)[0] < warm:
            return {"error": "worker did not start"}
        time.sleep(0.2)
        interval = 1.0 / args.rate
        total = int(args.rate * args.seconds)
        t0 = time.perf_counter()
        for i in range(total):
            wait = t0 + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            adapter.enqueue_each([time.time()])
        enqueue_s = time.perf_counter() - t0
        done = wait_count(warm + total, time.perf_counter() + 10)[0] - warm
    finally:
        stop_workers(workers)
    lat = sorted(record.latencies())
    if not lat:
        return {"error": "no task finished"}

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000

    # above what one producer's enqueue calls can offer, 'achieved' falls short of 'rate'; a
    # worker that cannot keep up leaves tasks undone within the 10 s after the last enqueue
    return {
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "lat_n": len(lat),
        "rate": args.rate,
        "achieved": total / enqueue_s if enqueue_s > 0 else 0.0,
        "done": done,
        "offered": total,
    }


def _commandstats(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    d = {k: b.get(k, 0) - a.get(k, 0) for k in b}
    d.pop("info", None)
    return {k: v for k, v in d.items() if v}


def w_commands(adapter: Adapter, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Commands and round trips per task, end to end: single enqueue, then one worker drains."""
    from bench.proxy import CountingProxy

    flush(url)
    direct = redis.Redis.from_url(url)
    conn = direct.connection_pool.connection_kwargs
    proxy = CountingProxy(conn.get("host", "127.0.0.1"), int(conn.get("port", 6379))).start()
    via = load(args.lib, proxy.url)
    n = args.n
    s0, c0 = _commandstats(direct), proxy.snapshot()
    via.enqueue_each([0.0] * n)
    s1, c1 = _commandstats(direct), proxy.snapshot()
    workers = start_workers(args.lib, proxy.url, 1)
    try:
        count = wait_count(n, time.perf_counter() + args.seconds)[0]
        time.sleep(0.3)  # let the last acks go out
        s2, c2 = _commandstats(direct), proxy.snapshot()
    finally:
        stop_workers(workers)
        via.close()
    enq, work = _delta(s0, s1), _delta(s1, s2)
    return {
        "n": n,
        "drained": count,
        "enqueue_cmds": (c1.commands - c0.commands) / n,
        "enqueue_rtt": (c1.round_trips - c0.round_trips) / n,
        "worker_cmds": (c2.commands - c1.commands) / max(1, count),
        "worker_rtt": (c2.round_trips - c1.round_trips) / max(1, count),
        "server_cmds": (sum(enq.values()) + sum(work.values())) / max(1, count),
        "commandstats_enqueue": enq,
        "commandstats_worker": work,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True)
    p.add_argument("--workload", choices=WORKLOADS, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--n-enqueue", type=int, default=5_000)
    p.add_argument("--n-batch", type=int, default=100_000)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--processes", type=int, default=0, help="drain: rediq's supervisor with N children")
    p.add_argument(
        "--handler", choices=("async", "def"), help="drain: the no-op as a coroutine or a plain def"
    )
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    record.setup(latency_slots=int(args.rate * args.seconds) + 1000)
    try:
        adapter = load(args.lib, args.url)
    except ImportError as exc:
        print(json.dumps({"status": "not installed", "error": str(exc)}))
        return 0
    result: dict[str, Any] = {
        "status": "ok",
        "version": adapter.version(),
        "config": adapter.config,
        "def_handler": bool(getattr(adapter, "def_handler", False)),
        "supervised": hasattr(adapter, "worker_supervised"),
    }
    if args.workload != "probe":
        fn = {"enqueue": w_enqueue, "drain": w_drain, "latency": w_latency, "commands": w_commands}
        result.update(fn[args.workload](adapter, args.url, args))
    adapter.close()
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
