"""Payload checks at enqueue, against a real server: nothing is stored when a payload is refused.
(Option validation and retry delays need no server: tests/pure/test_task_model.py.)"""

from __future__ import annotations

import pytest

from engine.client import Client
from engine.errors import PayloadError, PayloadTooLarge
from engine.ops import Settings


def test_payload_must_be_json(redis_url: str) -> None:
    with Client(redis_url) as client, pytest.raises(PayloadError) as info:
        client.enqueue("t", {"when": object()})
    assert str(info.value).startswith("E002:")


def test_a_circular_or_too_deep_payload_is_a_payload_error_not_a_traceback(redis_url: str) -> None:
    circular: list[object] = []
    circular.append(circular)
    deep: list[object] = []
    for _ in range(50_000):
        deep = [deep]
    with Client(redis_url) as client:
        for payload in (circular, deep):
            with pytest.raises(PayloadError, match="circular reference or nesting too deep"):
                client.enqueue("t", payload, queue="bad")
        assert client.backend.redis.exists("rediq:{bad}:pending") == 0
        assert client.enqueue("t", [[1, [2]]], queue="bad").created  # the shared encoder still works


def test_payload_over_the_limit_is_refused_and_nothing_is_stored(redis_url: str) -> None:
    settings = Settings(max_payload_bytes=1024)
    with Client(redis_url, settings=settings) as client:
        with pytest.raises(PayloadTooLarge) as info:
            client.enqueue("t", "x" * 2000, queue="big")
        assert "2,002 bytes, above the limit of 1,024" in str(info.value)
        assert client.backend.redis.exists("rediq:{big}:pending") == 0
        assert client.enqueue("t", "x" * 500, queue="big").created


def test_default_payload_limit_is_512_kib(redis_url: str) -> None:
    with Client(redis_url) as client:
        assert client.settings.max_payload_bytes == 512 * 1024
        with pytest.raises(PayloadTooLarge):
            client.enqueue("t", "x" * (512 * 1024))
