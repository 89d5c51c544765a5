"""Worker lifecycle hooks (``@registry.on_startup`` / ``@registry.on_shutdown``) and the state
they share with handlers (``ctx.state``): database pools, HTTP clients.

Startup hooks run once per worker process before it takes any task, in registration order;
shutdown hooks run once after the drain, in reverse order (what opened last closes first).
With ``--pool process`` each child process runs them too, on its own ``WorkerState``, and the
sync handlers in that child see the child's state.
"""

from __future__ import annotations

import asyncio
import inspect as pyinspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any

from engine.errors import StartupFailed

log = logging.getLogger("rediq.worker")

LifecycleHook = Callable[["WorkerState"], Awaitable[None] | None]
"""``hook(state)``, sync or async."""


class WorkerState(SimpleNamespace):
    """What startup hooks put here (``state.db = await create_pool()``) handlers read as
    ``ctx.state.db``. One per worker process (and one per child with ``--pool process``)."""


def hook_name(hook: Callable[..., Any]) -> str:
    module = getattr(hook, "__module__", None) or "?"
    return f"{module}.{getattr(hook, '__qualname__', repr(hook))}"


async def _call(hook: LifecycleHook, state: WorkerState) -> None:
    outcome = hook(state)
    if pyinspect.isawaitable(outcome):
        await outcome


async def run_startup(hooks: Sequence[LifecycleHook], state: WorkerState) -> None:
    """Run every startup hook in order; the first that raises stops the worker (StartupFailed,
    one line naming the hook and its error)."""
    for hook in hooks:
        try:
            await _call(hook, state)
        except Exception as exc:  # noqa: BLE001 - any hook error stops the start
            what = f"{type(exc).__name__}: {exc}"
            raise StartupFailed(f"startup hook {hook_name(hook)} failed: {what}") from None


async def run_shutdown(hooks: Sequence[LifecycleHook], state: WorkerState) -> None:
    """Run every shutdown hook, last registered first; one that raises is logged and the rest
    still run (each closes its own resource)."""
    for hook in reversed(hooks):
        try:
            await _call(hook, state)
        except Exception:  # noqa: BLE001 - logged; the other hooks must still close theirs
            log.exception("shutdown hook %s failed", hook_name(hook))


def run_startup_blocking(hooks: Sequence[LifecycleHook], state: WorkerState) -> None:
    """``run_startup`` outside an event loop (a ``--pool process`` child)."""
    if hooks:
        asyncio.run(run_startup(hooks, state))


def run_shutdown_blocking(hooks: Sequence[LifecycleHook], state: WorkerState) -> None:
    if hooks:
        asyncio.run(run_shutdown(hooks, state))


__all__ = [
    "LifecycleHook",
    "WorkerState",
    "hook_name",
    "run_shutdown",
    "run_shutdown_blocking",
    "run_startup",
    "run_startup_blocking",
]
