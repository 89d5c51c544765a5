"""The one fixture that starts real servers, plus a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.servers import ServerProcess, free_port


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
