"""A payload the hiredis packers cannot encode is refused at enqueue with nothing stored. (The
packers themselves need no server: tests/pure/test_backend_packing.py.)"""

from __future__ import annotations

import pytest

from engine.client import Client
from engine.errors import PayloadError


def test_a_payload_holding_a_lone_surrogate_is_a_payload_error(redis_url: str) -> None:
    with Client(redis_url) as client:
        with pytest.raises(PayloadError) as info:
            client.enqueue("t", {"name": "caf\udce9"}, queue="text")
        assert str(info.value).startswith("E002:")
        assert "not valid Unicode" in str(info.value)
        assert client.backend.redis.exists("rediq:{text}:pending") == 0
