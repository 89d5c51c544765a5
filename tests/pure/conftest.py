"""tests/pure is the fast inner loop: logic without a server, the whole directory in seconds.
A test here that asks for a server fails at once, naming the directory it belongs in."""

from __future__ import annotations

import pytest


@pytest.fixture
def valkey_server() -> None:
    pytest.fail("tests/pure starts no server: put a test that needs one under tests/engine", pytrace=False)
