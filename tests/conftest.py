"""The one fixture that starts real servers, plus a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from rediq_tui.firstrun import DISMISSED_MARKER, STATE_DIR_ENV
from tests.servers import ServerProcess, free_port


@pytest.fixture(scope="session", autouse=True)
def _console_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every console the tests start (in process, in tmux, served) remembers its state in a
    private directory, never the user's, where the first-launch tip is already dismissed (the
    snapshots show no tip; tests/tui/test_first_launch_tip.py points it elsewhere)."""
    state = tmp_path_factory.mktemp("console-state")
    (state / DISMISSED_MARKER).touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_DIR_ENV, str(state))
        yield


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
