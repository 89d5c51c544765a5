"""Engine test helpers: in-process and subprocess workers, and the invariant check that runs
after every engine test (opt out with ``@pytest.mark.no_invariants`` for tests that corrupt
state on purpose)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from engine.client import Client
from engine.ops import Settings
from engine.registry import Registry
from engine.worker import Worker, WorkerOptions
from tests.engine.invariants import check_invariants

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_invariants: the test corrupts state on purpose")


@pytest.fixture
def redis_url(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The session server's URL, checked for lost or misplaced tasks after the test."""
    yield redis_url
    if request.node.get_closest_marker("no_invariants"):
        return
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        problems = check_invariants(r)
    finally:
        r.close()
    if problems:
        pytest.fail("invariant violations:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def client(redis_url: str) -> Iterator[Client]:
    c = Client(redis_url)
    yield c
    c.close()


@contextlib.asynccontextmanager
async def running_worker(
    registry: Registry, url: str, queues: list[str], *, settings: Settings | None = None, **options: object
) -> AsyncIterator[Worker]:
    worker = Worker(registry, url, WorkerOptions(queues=queues, **options), settings)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_until_sync(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def spawn_worker(
    url: str, app: str, queues: str, *extra: str, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """A real worker process running ``tests/engine/worker_main.py``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests/engine/worker_main.py"), url, app, queues, *extra],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)
