"""A task app for workers launched from the console in tests."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.registry import Registry
from engine.worker import TaskContext

console = Registry()


@console.task("tui:quick", queue="tuiq")
async def quick(ctx: TaskContext, payload: Any) -> str:
    ctx.progress(50, "half way")
    await asyncio.sleep(0.05)
    return "ok"


@console.task("tui:slow", queue="tuislow")
async def slow(ctx: TaskContext, payload: Any) -> str:
    for step in range(1, 11):
        ctx.progress(step * 10, f"step {step} of 10")
        await asyncio.sleep(float(payload.get("step_s", 0.5)) if isinstance(payload, dict) else 0.5)
    return "done"
