"""Small dataclass messages the views post to the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class OpenQueue(Message):
    """Show the tasks of ``queue`` in ``state``."""

    queue: str
    state: str = "pending"


@dataclass
class OpenTask(Message):
    """Show the detail of one task."""

    queue: str
    task_id: str


@dataclass
class RefreshRequested(Message):
    """A view's parameters changed (queue, state, page, sort): poll it now."""


@dataclass
class OpenGroup(Message):
    """Show the tasks of one failure group."""

    queue: str
    fingerprint: str
    label: str
