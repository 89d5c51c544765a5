"""Scale-out in simulation: a 3-primary Valkey Cluster on loopback, one queue per primary, and
the same drain on one standalone Valkey for comparison (issue 20 point 7).

``python -m bench.cluster`` pre-enqueues N no-op tasks on each of three queues whose hash tags
land on three different primaries, drains them with one rediq worker process per queue, and
reports per shard (per primary): tasks/s drained, server commands per task (``INFO
commandstats`` delta), network bytes per task (``total_net_input_bytes`` + output delta),
retained memory per finished task (``used_memory`` delta), Valkey CPU per task
(``used_cpu_user`` + ``used_cpu_sys`` delta) and worker CPU per task (``getrusage`` in the
worker process over the same interval as its rate). The per-task costs are what the projection
in bench/README.md ("Scale-out") rests on; the rates on a shared 2-core box are not.

    python -m bench.cluster                  # N = 5,000 per queue, 3 runs, medians and ranges
    python -m bench.cluster --n 2000 --repeat 1
    python -m bench.cluster --smoke          # what tests/bench runs: proves the script works
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import queue as queue_module
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from engine.client import Client
from engine.keys import Keyspace
from engine.registry import Registry
from engine.task import Task
from engine.worker import TaskContext, Worker, WorkerOptions
from tests.servers import ClusterSet, ServerProcess, free_port

QUEUES = 3
BATCH = 1000
IDLE_S = 2.0


@dataclass(frozen=True)
class NodeSnapshot:
    """The server counters one measurement needs, read from one node."""

    commands: int  # every executed command, those inside Lua included; INFO itself excluded
    net_in: int
    net_out: int
    cpu_s: float  # used_cpu_user + used_cpu_sys of the main process
    used_memory: int


def snapshot(port: int) -> NodeSnapshot:
    r = redis.Redis(port=port, socket_timeout=5.0)
    try:
        stats = r.info("commandstats")
        commands = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
        net = r.info("stats")
        cpu = r.info("cpu")
        memory = r.info("memory")
    finally:
        r.close()
    return NodeSnapshot(
        commands=commands,
        net_in=int(net["total_net_input_bytes"]),
        net_out=int(net["total_net_output_bytes"]),
        cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        used_memory=int(memory["used_memory"]),
    )


@dataclass(frozen=True)
class DrainResult:
    """What one worker process measured between its first and its last handler start."""

    queue: str
    tasks: int
    rate: float  # (tasks - 1) / (last - first start)
    first: float  # time.monotonic() of the first and last start: one clock for every process
    last: float
    worker_cpu_us_per_task: float


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _noop(ctx: Any, payload: Any) -> None:
    """The parent's declaration of the task type (it never runs there)."""


def drain_worker(url: str, queue: str, n: int, out: Any) -> None:
    """Child process: one rediq worker (defaults: concurrency 10, leases, history and events on)
    serving ``queue`` until it has started ``n`` tasks, then a graceful stop."""
    logging.getLogger("rediq").setLevel(logging.ERROR)
    registry = Registry()
    marks: dict[str, float] = {}
    started = 0
    worker: Worker | None = None

    @registry.task(f"noop-{queue}", queue=queue)
    async def noop(ctx: TaskContext, payload: Any) -> None:
        nonlocal started
        started += 1
        if started == 1:
            marks["t0"], marks["cpu0"] = time.monotonic(), _cpu_s()
        if started == n:
            marks["t1"], marks["cpu1"] = time.monotonic(), _cpu_s()
            assert worker is not None
            worker.request_stop()

    worker = Worker(registry, url, WorkerOptions(queues=[queue], concurrency=10))
    worker.run_forever()
    span = marks["t1"] - marks["t0"]
    out.put(
        DrainResult(
            queue=queue,
            tasks=started,
            rate=(n - 1) / span if span > 0 else float("nan"),
            first=marks["t0"],
            last=marks["t1"],
            worker_cpu_us_per_task=(marks["cpu1"] - marks["cpu0"]) / max(n - 1, 1) * 1e6,
        )
    )


def spread_queues(node_of: Any, count: int) -> list[str]:
    """Queue names whose hash-tagged keys land on ``count`` different nodes."""
    chosen: dict[int, str] = {}
    for i in range(10_000):
        name = f"shard{i}"
        chosen.setdefault(node_of(Keyspace().queue(name).pending), name)
        if len(chosen) == count:
            return sorted(chosen.values())
    raise RuntimeError(f"no {count} queues on distinct nodes")


def per_task(before: NodeSnapshot, after: NodeSnapshot, tasks: int) -> dict[str, float]:
    return {
        "cmds": (after.commands - before.commands) / tasks,
        "net_bytes": (after.net_in - before.net_in + after.net_out - before.net_out) / tasks,
        "valkey_cpu_us": (after.cpu_s - before.cpu_s) / tasks * 1e6,
        "mem_bytes": (after.used_memory - before.used_memory) / tasks,
    }


def run_once(url: str, queues: list[str], node_of_queue: dict[str, int], n: int) -> dict[str, Any]:
    """Enqueue ``n`` tasks per queue, drain them with one worker process per queue, and return
    per node: the enqueue phase's and the drain phase's cost per task, and each queue's rate."""
    ports = sorted(set(node_of_queue.values()))
    registry = Registry()
    for queue in queues:  # declared, so the client does not warn about an unknown type
        registry.task(f"noop-{queue}", queue=queue)(_noop)
    client = Client(url, registry=registry)
    try:
        # an idle node's own cost (server cron; cluster bus pings on a cluster), per second
        idle = {p: snapshot(p) for p in ports}
        time.sleep(IDLE_S)
        empty = {p: snapshot(p) for p in ports}
        for queue in queues:
            for start in range(0, n, BATCH):
                size = min(BATCH, n - start)
                client.enqueue_many(
                    [Task(type=f"noop-{queue}", payload={}, queue=queue) for _ in range(size)]
                )
        enqueued = {p: snapshot(p) for p in ports}
    finally:
        client.backend.close()
    ctx = mp.get_context("spawn")  # a fresh interpreter: no sockets or loop inherited
    out = ctx.Queue()
    procs = [ctx.Process(target=drain_worker, args=(url, q, n, out)) for q in queues]
    for p in procs:
        p.start()
    drains: dict[str, DrainResult] = {}
    try:
        while len(drains) < len(procs):
            try:
                result = out.get(timeout=1.0)
            except queue_module.Empty:  # a worker that died never reports: fail, do not hang
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a drain worker exited with {failed[0]}") from None
                continue
            drains[result.queue] = result
        for p in procs:
            p.join(60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    drained = {p: snapshot(p) for p in ports}
    nodes = []
    for port in ports:
        mine = [q for q in queues if node_of_queue[q] == port]
        tasks = n * len(mine)
        nodes.append(
            {
                "port": port,
                "queues": mine,
                "tasks": tasks,
                "drain_rate": sum(drains[q].rate for q in mine),
                "worker_cpu_us": statistics.mean(drains[q].worker_cpu_us_per_task for q in mine),
                "enqueue": per_task(empty[port], enqueued[port], tasks),
                "drain": per_task(enqueued[port], drained[port], tasks),
                "idle_cpu_us_per_s": (empty[port].cpu_s - idle[port].cpu_s) / IDLE_S * 1e6,
                "retained_mem_bytes": (drained[port].used_memory - empty[port].used_memory) / tasks,
            }
        )
    # every queue together: all tasks over the union of the workers' spans (not a sum of rates:
    # the workers start one after another and need not overlap)
    union = max(d.last for d in drains.values()) - min(d.first for d in drains.values())
    total = (n * len(queues) - 1) / union
    return {"nodes": nodes, "total_drain_rate": total, "drains": [asdict(d) for d in drains.values()]}


def cluster_run(n: int) -> dict[str, Any]:
    cluster = ClusterSet(primaries=QUEUES, replicas=0).start()
    try:

        def node_of(key: str) -> int:
            return cluster.node_for_slot(key_slot(key.encode()))

        queues = spread_queues(node_of, QUEUES)
        return run_once(cluster.url, queues, {q: node_of(Keyspace().queue(q).pending) for q in queues}, n)
    finally:
        cluster.cleanup()


def single_run(n: int) -> dict[str, Any]:
    server = ServerProcess(port=free_port()).start()
    try:
        queues = [f"shard{i}" for i in range(QUEUES)]
        return run_once(server.url, queues, dict.fromkeys(queues, server.port), n)
    finally:
        server.cleanup()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


METRICS: list[tuple[str, str]] = [
    ("drain_rate", "drain tasks/s"),
    ("worker_cpu_us", "worker CPU µs/task"),
    ("drain.cmds", "drain server cmds/task"),
    ("drain.valkey_cpu_us", "drain Valkey CPU µs/task"),
    ("drain.net_bytes", "drain net bytes/task"),
    ("enqueue.cmds", "enqueue server cmds/task"),
    ("enqueue.valkey_cpu_us", "enqueue Valkey CPU µs/task"),
    ("enqueue.net_bytes", "enqueue net bytes/task"),
    ("retained_mem_bytes", "memory kept per finished task"),
    ("idle_cpu_us_per_s", "idle Valkey CPU µs per second"),
]


def pick(node: dict[str, Any], metric: str) -> float:
    value: Any = node
    for part in metric.split("."):
        value = value[part]
    return float(value)


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per node position (shard 0, 1, 2 in port order; one node when standalone): median and
    range over the runs of every metric."""
    positions = len(runs[0]["nodes"])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i in range(positions):
        out[f"node{i}"] = {m: spread([pick(r["nodes"][i], m) for r in runs]) for m, _ in METRICS}
    out["all"] = {"drain_rate": spread([float(r["total_drain_rate"]) for r in runs])}
    return out


def fmt(s: dict[str, float]) -> str:
    digits = 0 if s["median"] >= 100 else 1
    return f"{s['median']:,.{digits}f} [{s['min']:,.{digits}f}–{s['max']:,.{digits}f}]"


def print_table(title: str, summary: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\n{title}  (median [min–max] over runs)")
    names = list(summary)
    print(f"{'':32}" + "".join(f"{n:>26}" for n in names if n != "all"))
    nodes = [n for n in names if n != "all"]
    for metric, label in METRICS:
        print(f"{label:32}" + "".join(f"{fmt(summary[n][metric]):>26}" for n in nodes))
    print(f"{'all queues together, tasks/s':32}{fmt(summary['all']['drain_rate']):>26}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="tasks per queue (3 queues)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="N = 200, one run: the script works")
    parser.add_argument("--output", default="bench/results/cluster-latest.json")
    args = parser.parse_args(argv)
    n, repeat = (200, 1) if args.smoke else (args.n, args.repeat)
    report: dict[str, Any] = {"n_per_queue": n, "repeat": repeat, "load_before": load(), "runs": []}
    print(report["load_before"], flush=True)
    cluster_runs, single_runs = [], []
    for i in range(repeat):  # interleaved: both topologies see the same load drift
        cluster_runs.append(cluster_run(n))
        single_runs.append(single_run(n))
        print(f"run {i + 1}/{repeat} done; {load()}", flush=True)
    report["load_after"] = load()
    report["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report["cluster"] = {"runs": cluster_runs, "summary": summarise(cluster_runs)}
    report["single"] = {"runs": single_runs, "summary": summarise(single_runs)}
    report.pop("runs")
    print_table(f"Cluster, 3 primaries, one queue and one worker process per primary, N={n}/queue",
                report["cluster"]["summary"])  # fmt: skip
    print_table(f"One standalone Valkey, the same 3 queues and 3 worker processes, N={n}/queue",
                report["single"]["summary"])  # fmt: skip
    print(f"\n{report['uptime']}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
