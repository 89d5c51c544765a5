"""Write ``screenshots/*.svg`` of the console driving the live order demo.

    python scripts/demo_screenshots.py [--out screenshots] [--warmup 180]

Starts a private valkey-server and the real demo of ``rediq_tui/demo`` (a shop on a busy
afternoon: steady orders with bursts, payment retries, dead tasks with real errors, a batch
import, cron every minute; ``REDIQ_DEMO_PACE=1``), lets it run ``--warmup`` seconds (at least
70: the per-minute figures are the last 60 s, and the cron entry has fired), then drives the
real ``RediqApp`` through each view and saves each picture twice: ``NAME.svg`` at 80x24 and
``NAME-wide.svg`` at 140x40. The console runs with a private state directory (the
first-launch tip dismissed; nothing written to the user's). ``tests/docs/test_pictures.py``
checks what the pictures may contain.

The deterministic screenshots of fixed scenes (the snapshot tests' data) are written by
``scripts/export_screenshots.py``; these show real traffic and change on every run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("REDIQ_DEMO_PACE", "1")

from engine import inspect  # noqa: E402
from engine.client import Client  # noqa: E402
from engine.inspect import QueueSummary  # noqa: E402
from engine.task import TaskState  # noqa: E402
from rediq_tui.app import RediqApp  # noqa: E402
from rediq_tui.config import ConsoleConfig  # noqa: E402
from rediq_tui.demo.demo import Demo  # noqa: E402
from rediq_tui.firstrun import DISMISSED_MARKER, STATE_DIR_ENV  # noqa: E402
from rediq_tui.screens.confirm import ConfirmScreen  # noqa: E402
from rediq_tui.screens.detail import TaskDetailScreen  # noqa: E402
from rediq_tui.views.cron import CronView  # noqa: E402
from rediq_tui.views.failures import FailuresView  # noqa: E402
from rediq_tui.views.queues import QueuesView  # noqa: E402
from tests.servers import ServerProcess, free_port  # noqa: E402

SIZES = {"": (80, 24), "-wide": (140, 40)}
MIN_WARMUP_S = 70.0


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.1)


async def next_poll(pilot: Any, app: RediqApp) -> None:
    start = app.polls
    await wait_for(pilot, lambda: app.polls > start, what="a poll")


def candidate(client: Client, wanted: list[tuple[str, TaskState]]) -> tuple[str, str] | None:
    """A task of the first (queue, state) in ``wanted`` that has any: the one due last (it
    stays in that state longest)."""
    for queue, state in wanted:
        tasks = client.call(inspect.page, queue, state, 0, 50).tasks
        if tasks:
            last = max(tasks, key=lambda t: t.due_at_ms or 0)
            return last.queue, last.id
    return None


DEAD_WITH_A_REAL_ERROR = [("shipping", TaskState.DEAD), ("payment", TaskState.DEAD)]
"""task-detail: a dead task, its outcome, timeline and trimmed traceback (a shipment to a city
the carrier table lacks: a real KeyError raised in the handler)."""
CAN_STILL_RUN = [
    ("payment", TaskState.RETRY),
    ("shipping", TaskState.WAITING),
    ("cancellations", TaskState.SCHEDULED),
]
"""task-detail-why: a task that is not running and can still run (the explainer is shown only
for those): best a payment waiting out its backoff after a gateway timeout, with dependents
waiting on it; else a shipment waiting on its payment; else an order's delayed unpaid check."""
NOT_RUNNING = {TaskState.RETRY, TaskState.WAITING, TaskState.SCHEDULED}


def busiest(summaries: dict[str, QueueSummary]) -> tuple[str, str]:
    """The queue and state with the most tasks, pending first."""
    for state in ("pending", "scheduled", "completed"):
        counts = {name: q.count(state) for name, q in summaries.items()}
        if counts and max(counts.values()) > 0:
            return max(counts, key=lambda n: counts[n]), state
    return "payment", "pending"


async def shoot(
    app: RediqApp,
    pilot: Any,
    out: Path,
    name: str,
    written: list[Path],
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """``NAME.svg`` at 80x24 and ``NAME-wide.svg`` at the wide size, each after a poll at that
    size (pages fill the rows they have) that shows what ``ready`` wants, then back to 80x24."""
    for suffix, (width, height) in [*SIZES.items(), ("", SIZES[""])]:
        await pilot.resize_terminal(width, height)
        await next_poll(pilot, app)
        if (out / f"{name}{suffix}.svg") in written:
            continue  # the last step only restored 80x24
        deadline = time.monotonic() + 120
        while not ready():
            if time.monotonic() > deadline:
                print(f"warning: {name}{suffix}.svg taken without what it waited for", flush=True)
                break
            await next_poll(pilot, app)
        for _ in range(3):  # DataTable measures column widths on idle
            await pilot.pause(0.05)
        written.append(Path(app.save_screenshot(filename=f"{name}{suffix}.svg", path=str(out))))
        print(written[-1], flush=True)


async def open_detail(app: RediqApp, pilot: Any, target: tuple[str, str]) -> TaskDetailScreen:
    app.open_task(*target)
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None,
        what="task detail",
    )
    assert isinstance(app.screen, TaskDetailScreen)
    return app.screen


def not_running(screen: TaskDetailScreen) -> bool:
    return screen.info is not None and screen.info.state in NOT_RUNNING


async def shoot_why(app: RediqApp, pilot: Any, url: str, out: Path, written: list[Path]) -> None:
    """A runnable task's explainer, scrolled into view; a task that finished while it was being
    opened is passed over for the next one."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with Client(url) as c:
            target = candidate(c, CAN_STILL_RUN)
        if target is None:
            await pilot.pause(1)
            continue
        screen = await open_detail(app, pilot, target)
        if not_running(screen):
            body = str(screen.query_one("#detail-body").render())
            line = next((i for i, s in enumerate(body.splitlines()) if "Why not running?" in s), 0)
            screen.query_one("#detail-scroll").scroll_to(y=line, animate=False)
            await pilot.pause(0.2)
            shots = len(written)
            await shoot(app, pilot, out, "task-detail-why", written)
            await pilot.press("escape")
            if not_running(screen):  # as the pictures show it (its last poll)
                return
            del written[shots:]  # it ran meanwhile: another one
            continue
        await pilot.press("escape")
    raise TimeoutError("no task that can still run stayed long enough to be shown")


async def drive(url: str, out: Path) -> list[Path]:
    written: list[Path] = []
    # polls every 0.5 s: each picture is taken right after a poll at its size
    app = RediqApp(ConsoleConfig(redis_url=url, interval_ms=500, label="redis://demo"))
    async with app.run_test(size=SIZES[""]) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1, what="first poll")
        queues = app.query_one(QueuesView)

        def backlog() -> bool:
            """In a burst: a backlog (Head, Drain) besides dead tasks."""
            summaries = queues.summaries.values()
            return max((q.count("pending") for q in summaries), default=0) >= 5 and any(
                q.count("dead") for q in summaries
            )

        await wait_for(pilot, backlog, timeout=120, what="a burst's backlog and a dead task")
        busy, _ = busiest(queues.summaries)  # selected: its forecast line shows its drain time
        queues.table.move_cursor(row=queues.table.get_row_index(busy))
        await shoot(app, pilot, out, "queues", written, ready=backlog)

        await pilot.press("2")
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "workers", written)

        # the demo always has an import running: its progress bar
        app.tasks_view.open("imports", "active")
        app.action_show("tasks")

        def importing() -> bool:
            """An import well under way: its bar visibly part filled."""
            return any(20 <= (p.percent or 0) <= 90 for p in app.tasks_view.progress.values())

        await wait_for(pilot, importing, timeout=120, what="an import with progress")
        await shoot(app, pilot, out, "tasks-progress", written, ready=importing)

        queue, state = busiest(queues.summaries)
        app.tasks_view.open(queue, state)
        await next_poll(pilot, app)
        await shoot(app, pilot, out, "tasks", written)

        with Client(url) as c:
            dead = candidate(c, DEAD_WITH_A_REAL_ERROR)
        if dead is not None:
            await open_detail(app, pilot, dead)
            await shoot(app, pilot, out, "task-detail", written)
            await pilot.press("escape")
        await shoot_why(app, pilot, url, out, written)

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
        cron = app.query_one(CronView).table  # the every-minute entry: its last runs below
        cron.move_cursor(row=cron.get_row_index("stock-reconcile"))
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
    parser.add_argument("--warmup", type=float, default=180.0, help="seconds of demo traffic first")
    args = parser.parse_args()
    if args.warmup < MIN_WARMUP_S:
        parser.error(f"--warmup must be at least {MIN_WARMUP_S:.0f} s: per-minute figures need a minute")
    args.out.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="rediq-console-state-"))
    (state / DISMISSED_MARKER).touch()
    os.environ[STATE_DIR_ENV] = str(state)
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
