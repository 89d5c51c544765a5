"""One adapter per task-queue library: the same no-op task, enqueued and run its usual way.

Each adapter module imports its library lazily, so the harness runs with whatever subset of
peers is installed.
"""

from __future__ import annotations

import importlib
from typing import Protocol

LIBS = ("rediq", "huey", "dramatiq", "saq", "celery", "arq", "rq")
QUEUE = "bench"


class Adapter(Protocol):
    name: str
    has_batch: bool
    config: str
    """How the worker is configured (shown in the README)."""

    def version(self) -> str: ...

    def enqueue_each(self, tss: list[float]) -> None:
        """Enqueue one task per timestamp, one library call each."""

    def enqueue_batch(self, tss: list[float]) -> None:
        """Enqueue all of ``tss`` with the library's batch API (only if ``has_batch``)."""

    def worker(self) -> None:
        """Run one worker in this (forked) process until it is killed."""

    def close(self) -> None: ...


def load(name: str, url: str) -> Adapter:
    module = importlib.import_module(f"bench.libs.lib_{name}")
    adapter: Adapter = module.make(url)
    return adapter
