from __future__ import annotations

from datetime import datetime

import pytest

from engine.client import Client, build_task
from engine.errors import InvalidTask, PayloadError, PayloadTooLarge
from engine.ops import Settings
from engine.retry import Backoff, Fixed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 250}, "priority must be 0..100, got 250"),
        ({"priority": -1}, "priority must be 0..100, got -1"),
        ({"max_retry": -2}, "max_retry must be 0..1000, got -2"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"delay": -5}, "delay must be >= 0 seconds, got -5"),
        ({"queue": "bad queue{x}"}, "queue name 'bad queue{x}' is invalid"),
        ({"eta": datetime(2030, 1, 1)}, "eta must be timezone-aware"),  # noqa: DTZ001 - the point of the test
        ({"delay": 1, "eta": datetime.fromisoformat("2030-01-01T00:00:00+00:00")}, "either delay or eta"),
        ({"id": "has space"}, "id must be 1..128 characters"),
    ],
)
def test_validation_errors_name_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTask) as info:
        build_task("order:payment", {}, **options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_type_must_be_a_word() -> None:
    with pytest.raises(InvalidTask, match="type must be"):
        build_task("", {})
    with pytest.raises(InvalidTask, match="type must be"):
        build_task("two words", {})


def test_defaults() -> None:
    task = build_task("t", None)
    assert (task.priority, task.max_retry, task.queue) == (50, 3, "default")
    assert len(task.id) == 32


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


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    policy = Backoff(base=1.0, factor=2.0, cap=10.0, jitter=0.5)
    for attempt, raw in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert min(delays) >= raw * 0.5 - 1e-9
        assert max(delays) <= raw + 1e-9
        assert max(delays) - min(delays) > raw * 0.2  # jitter really spreads them
    fixed = Fixed(seconds=3, jitter=0.0)
    assert fixed.delay(7) == 3
