"""Retry policies with a pinned random source: the exact delays, jitter included."""

from __future__ import annotations

import random

import pytest

from engine.retry import DEFAULT_POLICY, Backoff, Fixed


class Pinned(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (0, 1.0)])
def test_backoff_doubles_from_one_second_by_default(attempt: int, expected: float) -> None:
    assert Backoff().delay(attempt, Pinned(1.0)) == pytest.approx(expected)


def test_backoff_jitter_spans_half_the_delay_and_the_cap_holds() -> None:
    policy = Backoff(base=2.0, factor=3.0, cap=10.0, jitter=0.5)
    assert policy.delay(2, Pinned(0.0)) == pytest.approx(3.0)  # 6 s, the jittered half at 0
    assert policy.delay(2, Pinned(1.0)) == pytest.approx(6.0)
    assert policy.delay(9, Pinned(1.0)) == pytest.approx(10.0)
    assert Backoff(jitter=0).delay(3, Pinned(0.0)) == pytest.approx(4.0)


def test_fixed_jitter_takes_up_to_a_tenth_off() -> None:
    assert Fixed(5.0).delay(7, Pinned(0.0)) == pytest.approx(4.5)
    assert Fixed(5.0).delay(7, Pinned(1.0)) == pytest.approx(5.0)
    assert Fixed(5.0, jitter=0).delay(1, Pinned(0.0)) == pytest.approx(5.0)


def test_default_policy_and_real_randomness_stay_in_range() -> None:
    assert DEFAULT_POLICY == Backoff()
    delays = [Backoff().delay(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 100
