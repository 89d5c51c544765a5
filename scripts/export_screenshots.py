"""Write ``screenshots/scenes/*.svg`` of each console view from the real app against a real server.

    python scripts/export_screenshots.py [--out screenshots/scenes]

Starts a private valkey-server (as the tests do), fills it with the deterministic scenes of
``tests/tui/scenes.py`` and saves one screenshot per view at 80x24 with ``app.save_screenshot``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rediq_tui.app import RediqApp  # noqa: E402
from rediq_tui.firstrun import DISMISSED_MARKER, STATE_DIR_ENV  # noqa: E402
from rediq_tui.screens.detail import TaskDetailScreen  # noqa: E402
from tests.servers import ServerProcess, free_port  # noqa: E402
from tests.tui import scenes  # noqa: E402
from tests.tui.helpers import make_app, wait_for  # noqa: E402

SIZE = (80, 24)


async def shoot(
    url: str,
    out: Path,
    name: str,
    drive: Callable[[RediqApp, Any], Awaitable[None]],
    **config: Any,
) -> Path:
    app = make_app(url, interval_ms=600_000, events=False, label="redis://demo", **config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1)
        await drive(app, pilot)
        for _ in range(3):  # DataTable measures column widths on idle
            await pilot.pause(0.05)
        path = app.save_screenshot(filename=f"{name}.svg", path=str(out))
    return Path(path)


async def show(app: RediqApp, pilot: Any, key: str) -> None:
    start = app.polls
    await pilot.press(key)
    await wait_for(pilot, lambda: app.polls > start)


async def main_async(out: Path) -> list[Path]:
    server = ServerProcess(port=free_port()).start()
    raw = redis.Redis(port=server.port, decode_responses=True)
    written: list[Path] = []
    try:

        async def reset(scene: Callable[[str, redis.Redis], None]) -> None:
            raw.flushall()
            scene(server.url, raw)

        async def nothing(app: RediqApp, pilot: Any) -> None:
            return None

        await reset(scenes.queues_scene)
        written.append(await shoot(server.url, out, "queues", nothing))
        written.append(await shoot(server.url, out, "queues-light", nothing, theme="light"))

        async def help_screen(app: RediqApp, pilot: Any) -> None:
            await pilot.press("question_mark")

        written.append(await shoot(server.url, out, "help", help_screen))

        async def confirm(app: RediqApp, pilot: Any) -> None:
            await pilot.press("j", "R")
            await wait_for(pilot, lambda: len(app.screen_stack) > 1)

        written.append(await shoot(server.url, out, "confirm-requeue-all", confirm))

        await reset(scenes.tasks_scene)

        async def tasks(app: RediqApp, pilot: Any) -> None:
            await show(app, pilot, "enter")

        written.append(await shoot(server.url, out, "tasks", tasks))

        async def active(app: RediqApp, pilot: Any) -> None:
            await show(app, pilot, "enter")
            await show(app, pilot, "greater_than_sign")

        written.append(await shoot(server.url, out, "tasks-active-progress", active))

        await reset(scenes.workers_scene)

        async def workers(app: RediqApp, pilot: Any) -> None:
            await show(app, pilot, "2")

        written.append(await shoot(server.url, out, "workers", workers))

        await reset(scenes.cron_scene)

        async def cron(app: RediqApp, pilot: Any) -> None:
            await show(app, pilot, "5")

        written.append(await shoot(server.url, out, "cron", cron))

        await reset(scenes.detail_scene)

        async def detail(app: RediqApp, pilot: Any) -> None:
            app.open_task("payment", "order-000")
            await wait_for(
                pilot, lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.info is not None
            )

        written.append(await shoot(server.url, out, "task-detail", detail))

        await reset(scenes.failures_scene)

        async def failures(app: RediqApp, pilot: Any) -> None:
            await show(app, pilot, "6")

        written.append(await shoot(server.url, out, "failures", failures))

        await reset(scenes.audit_scene)

        async def audit(app: RediqApp, pilot: Any) -> None:
            await show(app, pilot, "7")

        written.append(await shoot(server.url, out, "audit", audit))
    finally:
        raw.close()
        server.cleanup()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "screenshots" / "scenes"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # a private console state: the first-launch tip dismissed, nothing written to the user's
    state = Path(tempfile.mkdtemp(prefix="rediq-console-state-"))
    (state / DISMISSED_MARKER).touch()
    os.environ[STATE_DIR_ENV] = str(state)
    for path in asyncio.run(main_async(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
