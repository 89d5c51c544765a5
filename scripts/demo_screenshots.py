"""Write ``screenshots/*.svg`` of the console driving the live order demo.

    python scripts/demo_screenshots.py [--out screenshots] [--warmup 20]

Starts a private valkey-server, the real demo of ``rediq_tui/demo`` (workers and a stream of
orders, ``REDIQ_DEMO_PACE=0.3``), lets it run ``--warmup`` seconds, then drives the real
``RediqApp`` at 80x24 through each view (queues, workers, tasks with a progress bar, task
detail with dependencies, why/attempts, failures with a group retry, cron, audit) and saves one
screenshot per view. The demo and the server are stopped at the end.

The deterministic screenshots of fixed scenes (the snapshot tests' data) are written by
``scripts/export_screenshots.py``; these show real traffic and change on every run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("REDIQ_DEMO_PACE", "0.3")

from engine import inspect  # noqa: E402
from engine.client import Client  # noqa: E402
from engine.inspect import QueueSummary  # noqa: E402
from engine.task import TaskInfo, TaskState  # noqa: E402
from rediq_tui.app import RediqApp  # noqa: E402
from rediq_tui.config import ConsoleConfig  # noqa: E402
from rediq_tui.demo.demo import Demo  # noqa: E402
from rediq_tui.demo.models import BatchImportPayload  # noqa: E402
from rediq_tui.demo.tasks import registry  # noqa: E402
from rediq_tui.screens.confirm import ConfirmScreen  # noqa: E402
from rediq_tui.screens.detail import TaskDetailScreen  # noqa: E402
from rediq_tui.views.failures import FailuresView  # noqa: E402
from rediq_tui.views.queues import QueuesView  # noqa: E402
from tests.servers import ServerProcess, free_port  # noqa: E402

SIZE = (80, 24)


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.1)


async def next_poll(pilot: Any, app: RediqApp) -> None:
    start = app.polls
    await wait_for(pilot, lambda: app.polls > start, what="a poll")


def detail_candidate(client: Client) -> tuple[str, str] | None:
    """A task worth showing in detail, always one with dependencies: a retrying payment
    (blocked, with dependents waiting on it) is best, then one that completed after a failed
    attempt (a two-row attempt timeline), then a waiting task, then any completed one."""
    best: tuple[int, TaskInfo] | None = None
    for queue in ("payment", "shipping", "notifications", "inventory"):
        for state, rank in ((TaskState.RETRY, 0), (TaskState.WAITING, 2), (TaskState.COMPLETED, 3)):
            page = client.call(inspect.page, queue, state, 0, 50)
            for t in page.tasks:
                r = 1 if state == TaskState.COMPLETED and t.attempts > 1 else rank
                if (t.depends_on or t.dependents) and (best is None or r < best[0]):
                    best = (r, t)
    return (best[1].queue, best[1].id) if best else None


def busiest(summaries: dict[str, QueueSummary]) -> tuple[str, str]:
    """The queue and state with the most tasks, pending first (the demo drains fast)."""
    for state in ("pending", "scheduled", "completed"):
        counts = {name: q.count(state) for name, q in summaries.items()}
        if counts and max(counts.values()) > 0:
            return max(counts, key=lambda n: counts[n]), state
    return "payment", "pending"


async def shoot(app: RediqApp, pilot: Any, out: Path, name: str, written: list[Path]) -> None:
    for _ in range(3):  # DataTable measures column widths on idle
        await pilot.pause(0.05)
    written.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(out))))
    print(written[-1], flush=True)


async def drive(url: str, out: Path) -> list[Path]:
    written: list[Path] = []
    app = RediqApp(ConsoleConfig(redis_url=url, interval_ms=1000, label="redis://demo"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1, what="first poll")
        queues = app.query_one(QueuesView)
        # the busiest queue selected: its forecast line shows runtimes
        await wait_for(pilot, lambda: "payment" in queues.summaries, what="payment queue")
        queues.table.move_cursor(row=queues.table.get_row_index("payment"))
        await next_poll(pilot, app)
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "queues", written)

        await pilot.press("2")
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "workers", written)

        # a fresh batch import: a progress bar in the active imports
        with Client(url) as c:
            c.enqueue(
                registry.make_task("import:orders", BatchImportPayload(source="screenshot.csv", total=60))
            )
        app.tasks_view.open("imports", "active")
        app.action_show("tasks")
        await wait_for(
            pilot,
            lambda: any(p.percent for p in app.tasks_view.progress.values()),
            what="an import with progress",
        )
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "tasks-progress", written)

        queue, state = busiest(queues.summaries)
        app.tasks_view.open(queue, state)
        await next_poll(pilot, app)
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "tasks", written)

        with Client(url) as c:
            target = detail_candidate(c)
        if target is not None:
            app.open_task(*target)
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None,
                what="task detail",
            )
            await shoot(app, pilot, out, "task-detail", written)
            screen = app.screen
            assert isinstance(screen, TaskDetailScreen)
            body = str(screen.query_one("#detail-body").render())
            line = next((i for i, s in enumerate(body.splitlines()) if "Why not running?" in s), 0)
            screen.query_one("#detail-scroll").scroll_to(y=line, animate=False)
            await pilot.pause(0.2)
            await shoot(app, pilot, out, "task-detail-why", written)
            await pilot.press("escape")

        await pilot.press("6")
        failures = app.query_one(FailuresView)
        await wait_for(pilot, lambda: failures.table.row_count > 0, timeout=60, what="failure groups")
        await shoot(app, pilot, out, "failures", written)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await shoot(app, pilot, out, "failures-retry-group", written)
        writes = app.writes
        await pilot.press(*"yes", "enter")
        await wait_for(pilot, lambda: app.writes > writes, what="the group retry")
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "failures-retried", written)

        await pilot.press("5")
        await next_poll(pilot, app)
        writes = app.writes
        await pilot.press("x")  # run now: the entry's last runs and the audit show it
        await wait_for(pilot, lambda: app.writes > writes, what="cron run now")
        await next_poll(pilot, app)
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "cron", written)

        await pilot.press("7")
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "audit", written)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "screenshots")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of demo traffic first")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(port=free_port()).start()
    demo: Demo | None = None
    try:
        demo = Demo(server.url, seed=7).start()
        time.sleep(args.warmup)
        asyncio.run(drive(server.url, args.out))
    finally:
        if demo is not None:
            demo.stop()
        server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
