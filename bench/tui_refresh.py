"""Console refresh benchmark: 1,000 queues and 1,000,000 tasks, measured inside the real app.

    python bench/tui_refresh.py [--queues 1000] [--tasks-per-queue 5] [--deep 995000] [--rounds 3]
                                [--idle-s 20]

Starts a private valkey-server, fills it, runs the console headless at 80x24 and prints the
median (of ``--rounds``) time of a full refresh (from the poll's start until the view shows the
new data: Redis round trips + table update) of the Queues view and of a Tasks page of the deep
queue, the console's idle CPU (share of one core over ``--idle-s`` seconds at the default 2 s
refresh, pub/sub events on) and its RSS. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.client import Client  # noqa: E402
from engine.task import Task  # noqa: E402
from rediq_tui.app import RediqApp  # noqa: E402
from rediq_tui.config import ConsoleConfig  # noqa: E402
from tests.servers import ServerProcess, free_port  # noqa: E402


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(url: str, queues: int, per_queue: int, deep: int) -> None:
    with Client(url) as c:
        batch: list[Task] = []
        for q in range(queues):
            for i in range(per_queue):
                batch.append(Task(type="bench:noop", payload={"i": i}, queue=f"q{q:04d}"))
            if len(batch) >= 2000:
                c.enqueue_many(batch)
                batch = []
        for i in range(deep):
            batch.append(Task(type="bench:deep", payload={"i": i, "pad": "x" * 64}, queue="deep"))
            if len(batch) >= 2000:
                c.enqueue_many(batch)
                batch = []
        if batch:
            c.enqueue_many(batch)


async def measure(url: str, rounds: int) -> dict[str, list[float]]:
    app = RediqApp(ConsoleConfig(redis_url=url, interval_ms=3_600_000, events=False))
    times: dict[str, list[float]] = {"queues": [], "tasks": []}
    parts: dict[str, list[tuple[float, float]]] = {"queues": [], "tasks": []}
    async with app.run_test(size=(80, 24)) as pilot:

        async def one_poll() -> float:
            start_polls = app.polls
            t0 = time.perf_counter()
            app.poll()
            while app.polls == start_polls:  # noqa: ASYNC110 - a busy wait measures without a pause's delay
                await asyncio.sleep(0)
            return time.perf_counter() - t0

        while app.polls < 1:
            await pilot.pause(0.01)
        for _ in range(rounds):
            times["queues"].append(await one_poll())
            parts["queues"].append((app.last_fetch_s, app.last_show_s))
        app.tasks_view.open("deep", "pending")
        app.action_show("tasks")
        for _ in range(rounds):
            times["tasks"].append(await one_poll())
            parts["tasks"].append((app.last_fetch_s, app.last_show_s))
        rows = app.tasks_view.table.row_count
        print(f"tasks page rows: {rows} (page size from terminal height)")
    for view, samples in parts.items():
        fetch = statistics.median(f for f, _ in samples) * 1000
        show = statistics.median(s for _, s in samples) * 1000
        print(f"{view:>7}: median fetch (Redis) {fetch:8.1f} ms, table update {show:8.1f} ms")
    return times


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_cpu(url: str, seconds: float) -> float:
    """The console left open on the Queues view: CPU time per wall-clock time, in percent."""
    app = RediqApp(ConsoleConfig(redis_url=url, interval_ms=2000, events=True))
    async with app.run_test(size=(80, 24)) as pilot:
        while app.polls < 2:
            await pilot.pause(0.05)
        c0, t0 = cpu_s(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (cpu_s() - c0) / (time.perf_counter() - t0) * 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--tasks-per-queue", type=int, default=5)
    parser.add_argument("--deep", type=int, default=995_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=20.0)
    args = parser.parse_args()
    server = ServerProcess(port=free_port()).start()
    try:
        t0 = time.perf_counter()
        fill(server.url, args.queues, args.tasks_per_queue, args.deep)
        total = args.queues * args.tasks_per_queue + args.deep
        print(
            f"filled {args.queues:,} queues + deep queue, {total:,} tasks in {time.perf_counter() - t0:.1f}s"
        )
        rss0 = rss_mb()
        times = asyncio.run(measure(server.url, args.rounds))
        for view, samples in times.items():
            print(
                f"{view:>7} refresh: median {statistics.median(samples) * 1000:8.1f} ms"
                f"  max {max(samples) * 1000:8.1f} ms  ({len(samples)} rounds)"
            )
        print(f"RSS: {rss_mb():.0f} MB (before the app: {rss0:.0f} MB)")
        if args.idle_s > 0:
            cpu = asyncio.run(idle_cpu(server.url, args.idle_s))
            what = f"Queues view, 2 s refresh, events on, {args.idle_s:.0f} s"
            print(f"idle CPU ({what}): {cpu:.1f} % of a core")
            print(f"RSS after idling: {rss_mb():.0f} MB")
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
