"""A test kit for your own tests: a private Valkey, isolated clients, and a real worker run
until the work is done.

With rediq installed, pytest loads this module as a plugin (entry point ``rediq``):

    from engine import Client
    from engine.testing import run_until_idle

    def test_payment_completes(rediq_url, rediq_settings):
        # a client with the app's registry: the task lands in the queue its type declares
        with Client(rediq_url, settings=rediq_settings, registry=registry) as client:
            paid = client.enqueue("order:payment", {"order_id": "o-1", "amount": 5})
            run_until_idle(registry, rediq_url, rediq_settings, horizon_s=3600)
            assert client.get_task(paid.id).state == "completed"

(``examples/orders/test_pipeline.py`` is a complete example.)

- ``rediq_url`` (session): a private embedded Valkey in a temporary directory, on a unix socket.
- ``rediq_client``: a ``Client`` whose keys carry a prefix of their own, so tests never see
  each other's tasks (``rediq_client.settings`` goes to workers and other clients).
- ``run_until_idle``: a real worker, in process, until every queue it serves is empty: nothing
  pending or running, no dependency release outstanding, and nothing scheduled or retrying
  within ``horizon_s``. Tasks due within the horizon come due at once (``advance``), so delays
  and retry backoff do not slow a test down; the rest of the engine runs as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine import embedded
from engine.backend import AsyncBackend, Batch, Op, cmd, script_call
from engine.client import Client
from engine.connection import parse_url
from engine.ops import Settings, server_time_ms
from engine.registry import Registry
from engine.worker import TaskOutcome, Worker, WorkerOptions

IDLE_POLL_S = 0.02
IDLE_CONFIRMATIONS = 2
"""Consecutive idle readings before the worker is stopped (an exchange in flight between two
readings can still add work)."""


class NotIdle(AssertionError):
    """The queues still had work when ``run_until_idle`` gave up."""


@dataclass
class RunReport:
    """What a ``run_until_idle`` worker did, in the order tasks finished."""

    outcomes: list[TaskOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def completed(self) -> int:
        return self.count("completed")

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.completed


def advance(settings: Settings, queues: Sequence[str], seconds: float) -> Op[int]:
    """Bring scheduled and retrying tasks due within ``seconds`` forward to now (as if the clock
    had moved on); returns how many came due."""
    moved = 0
    for queue in queues:
        qk = settings.keyspace.queue(queue)
        moved += int(
            (yield script_call("testkit_advance", [qk.scheduled, qk.retry], [qk.base, int(seconds * 1000)]))
        )
    return moved


def outstanding(settings: Settings, queues: Sequence[str], horizon_s: float = 0.0) -> Op[int]:
    """Tasks that keep the queues from being idle: pending, active (leased), dependency releases
    not yet told, and scheduled or retrying ones due within ``horizon_s``."""
    now = yield from server_time_ms()
    until = now + int(horizon_s * 1000)
    calls = []
    for queue in queues:
        qk = settings.keyspace.queue(queue)
        calls += [
            cmd("ZCARD", qk.pending),
            cmd("ZCARD", qk.active),
            cmd("ZCARD", qk.dep_outbox),
            cmd("ZCOUNT", qk.scheduled, "-inf", until),
            cmd("ZCOUNT", qk.retry, "-inf", until),
        ]
    counts = yield Batch(calls)
    return sum(int(c) for c in counts)


async def run_until_idle_async(
    registry: Registry,
    url: str,
    settings: Settings | None = None,
    queues: Sequence[str] | None = None,
    *,
    horizon_s: float = 0.0,
    timeout_s: float = 30.0,
    concurrency: int = 4,
) -> RunReport:
    """Run a real worker for ``queues`` (default: the registry's) until they are idle; raises
    ``NotIdle`` after ``timeout_s``."""
    settings = settings or Settings()
    served = list(queues or registry.queues or ["default"])
    report = RunReport()
    worker = Worker(
        registry,
        url,
        WorkerOptions(queues=served, concurrency=concurrency, poll_interval_s=IDLE_POLL_S, maintenance_s=0.2),
        settings,
    )
    worker.add_listener(report.outcomes.append)
    running = asyncio.create_task(worker.run(), name="rediq-testkit-worker")
    probe = AsyncBackend(parse_url(url).aio())
    deadline = time.monotonic() + timeout_s
    idle_readings = 0
    left = -1
    try:
        while idle_readings < IDLE_CONFIRMATIONS:
            if running.done():
                running.result()  # the worker failed to start: raise its error
                raise NotIdle("the worker stopped before the queues were idle")
            if time.monotonic() > deadline:
                raise NotIdle(
                    f"{left} task(s) still outstanding in {', '.join(served)} after {timeout_s:g} s"
                )
            if horizon_s > 0:
                await probe.run(advance(settings, served, horizon_s))
            left = await probe.run(outstanding(settings, served, horizon_s))
            idle_readings = idle_readings + 1 if left == 0 else 0
            await asyncio.sleep(IDLE_POLL_S)
    finally:
        worker.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, timeout=10)
        await probe.close()
    return report


def run_until_idle(
    registry: Registry,
    url: str,
    settings: Settings | None = None,
    queues: Sequence[str] | None = None,
    *,
    horizon_s: float = 0.0,
    timeout_s: float = 30.0,
    concurrency: int = 4,
) -> RunReport:
    """``run_until_idle_async`` for synchronous tests."""
    return asyncio.run(
        run_until_idle_async(
            registry,
            url,
            settings,
            queues,
            horizon_s=horizon_s,
            timeout_s=timeout_s,
            concurrency=concurrency,
        )
    )


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def rediq_url() -> Iterator[str]:
    """A private embedded Valkey for this test session (its own directory and socket)."""
    directory = Path(tempfile.mkdtemp(prefix="rediq-test-"))
    url = embedded.ensure_server(directory)
    yield url
    embedded.stop_server(directory=directory)


@pytest.fixture
def rediq_settings() -> Settings:
    """Settings with a key prefix of this test's own."""
    return Settings(prefix=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def rediq_client(rediq_url: str, rediq_settings: Settings) -> Iterator[Client]:
    with Client(rediq_url, settings=rediq_settings) as client:
        yield client


__all__ = [
    "NotIdle",
    "RunReport",
    "advance",
    "outstanding",
    "rediq_client",
    "rediq_settings",
    "rediq_url",
    "run_until_idle",
    "run_until_idle_async",
]
