"""rediq's engine: the queue, its worker runtime, and the read/act APIs the console uses.

Knows nothing of Textual or the console (an import-linter contract checks it).
"""

from engine.client import AsyncClient, Client
from engine.errors import Permanent, RediqError, Retryable
from engine.ops import EnqueueResult, Settings
from engine.task import Task, TaskInfo, TaskState

__all__ = [
    "AsyncClient",
    "Client",
    "EnqueueResult",
    "Permanent",
    "RediqError",
    "Retryable",
    "Settings",
    "Task",
    "TaskInfo",
    "TaskState",
]
