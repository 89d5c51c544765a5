"""One adapter per task-queue library: the same no-op task, enqueued and run its usual way.

Each adapter module imports its library lazily, so the harness runs with whatever subset of
peers is installed.
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Protocol

LIBS = ("rediq", "huey", "dramatiq", "saq", "celery", "arq", "rq")
QUEUE = "bench"
CONCURRENCY_ENV = "BENCH_CONCURRENCY"
"""Set by ``python -m bench --concurrency N`` for the runners it starts."""


def _at_least_one(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) >= 1 else None


def add_concurrency_option(parser: argparse.ArgumentParser) -> None:
    """``--concurrency N``: every library's worker runs N handlers at once (its runners read
    ``BENCH_CONCURRENCY``; see ``concurrency``)."""

    def positive(text: str) -> int:
        value = _at_least_one(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
        return value

    parser.add_argument(
        "--concurrency",
        type=positive,
        metavar="N",
        help="handlers each worker process runs at once, for every library (default: 10; dramatiq 8)",
    )


def concurrency(default: int) -> int:
    """The handlers one worker process runs at once: ``--concurrency`` when given, else the
    library's own setting in this bench (``default``)."""
    raw = os.environ.get(CONCURRENCY_ENV, "")
    if not raw:
        return default
    value = _at_least_one(raw)
    if value is None:
        raise SystemExit(f"{CONCURRENCY_ENV}={raw!r}: set it to a whole number of at least 1")
    return value


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
