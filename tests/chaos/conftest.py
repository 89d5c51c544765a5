"""Fixtures for the chaos scenarios: private servers and worker pools that are always cleaned up."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.chaos.harness import WorkerPool, scale
from tests.servers import ServerProcess, free_port

ServerFactory = Callable[..., ServerProcess]
PoolFactory = Callable[..., WorkerPool]


def pytest_report_header(config: pytest.Config) -> str:
    return f"rediq chaos scale: {scale()} (REDIQ_CHAOS_SCALE)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The suite-wide 120 s limit fits the default scale; at full sizes (50,000 tasks, 400 cron
    minutes, 200,000 for memory) a scenario is given up to 15 minutes."""
    limit = int(max(120, 900 * scale()))
    for item in items:
        if item.get_closest_marker("chaos") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    """``server_factory(extra_args=[...])``: a private server on its own port."""
    servers: list[ServerProcess] = []

    def make(extra_args: Sequence[str] = ()) -> ServerProcess:
        server = ServerProcess(port=free_port(), extra_args=list(extra_args)).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.signal(signal.SIGCONT)  # a test may have left it stopped
        s.cleanup()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    d = tmp_path / "ledger"
    d.mkdir()
    return d


@pytest.fixture
def pool_factory(tmp_path: Path, ledger: Path) -> Iterator[PoolFactory]:
    pools: list[WorkerPool] = []

    def make(url: str, queues: str, **kwargs: object) -> WorkerPool:
        log_dir = tmp_path / f"logs{len(pools)}"
        log_dir.mkdir()
        pool = WorkerPool(url, queues, ledger, log_dir, **kwargs)  # type: ignore[arg-type]
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        for proc in p.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
