"""Small dataclass messages the views post; the app (navigation) and ``rediq_tui.actions``
(writes) act on them. Views never call the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from textual.message import Message

from engine.client import AsyncClient

WriteOp = Callable[[AsyncClient], Awaitable[str]]
"""A write: runs against the client, returns the toast text (naming its target, escaped)."""


@dataclass
class OpenQueue(Message):
    """Show the tasks of ``queue`` in ``state`` (``None``: the state that needs attention)."""

    queue: str
    state: str | None = "pending"


@dataclass
class OpenTask(Message):
    """Show the detail of one task (``queue`` empty: find its queue first)."""

    queue: str
    task_id: str


@dataclass
class OpenWorker(Message):
    """Show the detail of one worker."""

    worker_id: str


@dataclass
class Jump(Message):
    """``:`` or a paste: a queue name, a worker id or a task id, whatever it is."""

    text: str


@dataclass
class RefreshRequested(Message):
    """A view's parameters changed (queue, state, page, sort): poll it now."""


@dataclass
class OpenGroup(Message):
    """Show the tasks of one failure group."""

    queue: str
    fingerprint: str
    label: str


@dataclass
class TaskAction(Message):
    """Requeue, cancel, delete or restore the given tasks of one queue."""

    kind: str
    queue: str
    ids: list[str]
    on_done: Callable[[], None] | None = field(default=None, compare=False)


@dataclass
class BulkStateAction(Message):
    """Requeue or flush every task of a queue in a state (optionally only those matching)."""

    kind: str
    queue: str
    state: str
    needle: str = ""


@dataclass
class GroupAction(Message):
    """Retry or delete every task of one failure group."""

    kind: str
    queue: str
    fingerprint: str
    count: int
    label: str


@dataclass
class WriteRequested(Message):
    """Any other write (pause a queue, run a cron entry): ``confirm`` asks first."""

    op: WriteOp
    confirm: str | None = None


@dataclass
class EditRateLimit(Message):
    """Ask for a new rate limit of ``queue`` (``current``: how it reads now)."""

    queue: str
    current: str


@dataclass
class LaunchRequested(Message):
    """Open the launch-a-worker dialog."""


@dataclass
class StopWorker(Message):
    """Ask a worker (any, not only launched ones) to drain and stop."""

    worker_id: str
    label: str


@dataclass
class CopyText(Message):
    """Copy to the terminal's clipboard (OSC 52)."""

    text: str
    what: str


@dataclass
class OpenCharts(Message):
    """Show a queue's last hour (throughput and latency per minute)."""

    queue: str
