"""rediq's engine: the queue, its worker runtime, and the read/act APIs the console uses.

Knows nothing of Textual or the console (an import-linter contract checks it).
"""

from engine.client import AsyncClient, Client
from engine.errors import (
    Permanent,
    RateLimited,
    RediqError,
    ResultTimeout,
    Retryable,
    StartupFailed,
    TaskCancelled,
    TaskDead,
    TaskExpired,
    TaskFailed,
)
from engine.handles import TaskHandle
from engine.lifecycle import WorkerState
from engine.ops import EnqueueResult, Settings
from engine.registry import Registry
from engine.retry import Backoff, Fixed
from engine.task import Task, TaskInfo, TaskState
from engine.worker import TaskContext, Worker, WorkerOptions

__all__ = [
    "AsyncClient",
    "Backoff",
    "Client",
    "EnqueueResult",
    "Fixed",
    "Permanent",
    "RateLimited",
    "RediqError",
    "Registry",
    "ResultTimeout",
    "Retryable",
    "Settings",
    "StartupFailed",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskDead",
    "TaskExpired",
    "TaskFailed",
    "TaskHandle",
    "TaskInfo",
    "TaskState",
    "Worker",
    "WorkerOptions",
    "WorkerState",
]
