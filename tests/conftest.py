"""The one fixture that starts real servers, plus a fresh database per test; and the
``server`` marker that splits the fast inner loop (``pytest -m "not server"``: tests/pure)
from everything else."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _pytest.mark.expression import Expression

from tests.servers import ServerProcess, free_port

PURE = Path(__file__).parent / "pure"
"""The only directory whose tests start nothing: no server, no worker, no console."""


def _outside_pure(path: Path) -> bool:
    return PURE != path and PURE not in path.parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # every test outside tests/pure needs a server, a console or a process of its own
    for item in items:
        if _outside_pure(Path(item.path)):
            item.add_marker(pytest.mark.server)


def _excludes_every_server_test(config: pytest.Config) -> bool:
    """Whether the ``-m`` expression deselects a test marked ``server`` whatever other markers
    it carries: then the directories outside tests/pure need not even be imported (importing
    the console and the engine's test apps is most of the time of an inner-loop run)."""
    text = config.option.markexpr
    if not text:
        return False
    expression = Expression.compile(text)
    others = [m.split(":")[0] for m in config.getini("markers") if not m.startswith("server:")]
    for n in range(len(others) + 1):
        for extra in itertools.combinations(others, n):
            names = {"server", *extra}
            if expression.evaluate(lambda name, /, names=names, **_: name in names):
                return False
    return True


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.parent == PURE.parent and collection_path != PURE and collection_path.is_dir():
        return True if _excludes_every_server_test(config) else None
    return None


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    server = ServerProcess(port=free_port()).start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(valkey_server: ServerProcess) -> Iterator[str]:
    """A URL to a private server whose data is wiped before each test (our own server on its
    own port, never a shared one)."""
    r = redis.Redis(port=valkey_server.port)
    if valkey_server.proc is None or valkey_server.proc.poll() is not None:
        valkey_server.start()
    r.flushall()
    r.close()
    yield valkey_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()
