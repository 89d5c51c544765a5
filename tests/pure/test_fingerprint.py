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


def test_thirty_failures_differing_only_by_times_and_numbers_make_one_group() -> None:
    messages = {
        normalise_error(
            f"HTTPError: 503 from payments at 2025-12-{day:02d}T04:{minute:02d}:37Z after {day * 7} ms "
            f"(retry-after: Tue, {day:02d} Dec 2025 04:{minute:02d}:{day:02d} GMT, "
            f"local {minute}:{day:02d}:01)"
        )
        for day, minute in zip(range(1, 31), range(10, 40), strict=True)
    }
    assert messages == {
        "HTTPError: <n> from payments at <time> after <n> ms (retry-after: <time>, local <time>)"
    }


@pytest.mark.parametrize(
    ("error", "sample"),
    [
        ("a   b\t\tc", "a b c"),
        ("segfault at 0xdeadbeef", "segfault at <hex>"),
        ("row ab12cd failed", "row <id> failed"),  # six characters mixing letters and digits
        ("row ab12c failed", "row ab12c failed"),  # five: not an identifier
        ("job 3f2a9c1e-1234-4abc-9def-0123456789ab", "job <uuid>"),
        ("digest 0123456789abcdef0", "digest <id>"),
        ("order ord_9f8e7d6c lost", "order <id> lost"),
        ("KeyError: 'order-8812'", "KeyError: <str>"),
        ("at 2025-12-02T04:46:37.123+01:00 and 2025-12-02", "at <time> and <time>"),
    ],
)
def test_exact_samples(error: str, sample: str) -> None:
    """Exact outputs, so that a changed pattern, placeholder or length fails a named case."""
    assert normalise_error(error) == sample
