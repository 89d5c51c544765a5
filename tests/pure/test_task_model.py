"""Task options validated before anything is sent (one-line errors naming the field), the
defaults, and the retry policies' delays. No server: the enqueue-time payload checks are in
tests/engine/test_task_model.py."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.client import build_task
from engine.errors import InvalidTask
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


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    policy = Backoff(base=1.0, factor=2.0, cap=10.0, jitter=0.5)
    for attempt, raw in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert min(delays) >= raw * 0.5 - 1e-9
        assert max(delays) <= raw + 1e-9
        assert max(delays) - min(delays) > raw * 0.2  # jitter really spreads them
    fixed = Fixed(seconds=3, jitter=0.0)
    assert fixed.delay(7) == 3
