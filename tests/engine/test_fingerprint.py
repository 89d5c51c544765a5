from __future__ import annotations

import pytest

from engine.fingerprint import MAX_SAMPLE, normalise_error


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ConnectionError: 10.0.0.7:6379 refused", "ConnectionError: 10.0.0.9:6380 refused"),
        ("KeyError: 'order-8812'", "KeyError: 'order-1'"),
        ("ValueError: bad row a3f9b2", "ValueError: bad row 77c0de"),
        (
            "timeout after 30 s for job 3f2a9c1e-1234-4abc-9def-0123456789ab",
            "timeout after 5.5 s for job 00000000-0000-4000-8000-000000000000",
        ),
        ("segfault at 0x7ffde1a0", "segfault at 0xdeadbeef"),
        ("db.example.com:5432 unreachable", "db2.example.org:6543 unreachable"),
    ],
)
def test_same_failure_with_other_values_normalises_the_same(a: str, b: str) -> None:
    assert normalise_error(a) == normalise_error(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ConnectionError: refused", "TimeoutError: refused"),
        ("E004: timed out after 30 s", "E002: payload is not valid JSON"),
        ("card expired", "card declined"),
    ],
)
def test_different_failures_stay_apart(a: str, b: str) -> None:
    assert normalise_error(a) != normalise_error(b)


def test_only_the_first_line_counts_and_samples_are_capped() -> None:
    assert normalise_error("Boom\nTraceback (most recent call last):\n  ...") == "Boom"
    assert len(normalise_error("x " * 1000)) <= MAX_SAMPLE
    assert normalise_error("") == ""
