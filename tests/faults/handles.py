"""A worker under test and everything it started: a kill cancels all of it (``WorkerHandle``).

Tasks are attributed to a worker by a context variable set while its ``run`` task is created
(every task it creates, directly or not, copies that context) and a loop task factory that
reads it."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from engine.worker import Worker
from tests.faults.wire import Wire

OWNER: contextvars.ContextVar[WorkerHandle | None] = contextvars.ContextVar("rediq_fault_owner", default=None)


def task_factory(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    """Every task a worker creates, directly or not, is remembered by its handle, so that a
    kill can cancel all of them (the worker's own cleanup never runs)."""
    task = asyncio.Task(coro, loop=loop, context=context)
    owner = context.run(OWNER.get) if context is not None else OWNER.get()
    if owner is not None:
        owner.tasks.add(task)
        task.add_done_callback(owner.task_done)
    return task


@dataclass
class WorkerHandle:
    n: int
    worker: Worker
    wire: Wire
    real: Any
    run_task: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    stopped: bool = False

    crashed: list[str] = field(default_factory=list)
    """Tasks of this worker that ended with an exception (a loop that died)."""

    def task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self.wire.killed:
            self.crashed.append(f"{task.get_name()} ended with {task.exception()!r}")

    @property
    def alive(self) -> bool:
        return not self.wire.killed and not self.stopped

    def kill(self) -> None:
        """Abandon the worker: its connections drop (requests fail, replies in flight are
        lost) and every task it created is cancelled. Its cleanup never reaches Redis."""
        self.wire.kill()
        for task in list(self.tasks):
            task.cancel()
