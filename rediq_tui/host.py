"""What a view may read from the app it lives in, as a protocol: views never import the app
(an import-linter contract), they read this and post messages (``rediq_tui.messages``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rediq_tui.launcher import LaunchedWorker


class Host(Protocol):
    read_only: bool
    clock: Callable[[], float]
    launched: Sequence[LaunchedWorker]
    display_name: str
