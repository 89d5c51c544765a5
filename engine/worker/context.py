"""What a handler gets besides its payload (``TaskContext``) and what outcome listeners get
(``TaskOutcome``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import ops, tasklog
from engine.results import dependency_results
from engine.worker.core import Outcome
from engine.worker.protocol import Job

if TYPE_CHECKING:  # the driver imports this module
    from engine.worker.driver import Worker


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    task_id: str
    queue: str
    type: str
    outcome: Outcome
    """Completed, retry, dead, cancelled, timeout or stale (lease lost); a ``StrEnum``, so it
    also equals its name as a string (``'completed'``...)."""
    duration_s: float
    attempt: int
    error: str | None = None


class TaskContext:
    """What a handler gets besides its payload."""

    def __init__(self, job: Job, worker: Worker) -> None:
        self.id = job.id
        self.type = job.type
        self.queue = job.queue
        self.attempt = job.attempt
        self.max_retry = job.max_retry
        self.metadata: dict[str, str] = ops._json(job.metadata_raw, {}) or {}
        self.worker_id = worker.id
        self.state = worker.state
        """What the registry's startup hooks set up (``ctx.state.db``...), shared by all tasks."""
        self.cancelled = False
        self._job = job
        self._worker = worker

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt > self.max_retry

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0..100). Non-blocking and safe from threads; only the latest report
        per task is sent, and the stored value never goes down within an attempt."""
        self._worker._report_progress(self._job, float(percent), message)

    def log(self, message: str, level: str = "info") -> None:
        """Write a log line for this task, shown with it (``rediq task logs ID``, the console's
        detail); the last 100 kept. Non-blocking and safe from threads (``engine.tasklog``)."""
        tasklog.writer(self._worker).add(
            self._job, tasklog.level_of(level), str(message), int(time.time() * 1000)
        )

    async def dependency_results(self) -> dict[str, Any]:
        """The results of this task's completed dependencies (``depends_on``), by their ids."""
        op = dependency_results(self._worker.settings, self.queue, self.id)
        return await self._worker.backend.run(op)
