"""Hypothesis profiles: ``default`` keeps the fuzz tests to about half a minute in the main
suite; ``HYPOTHESIS_PROFILE=deep`` runs 10,000 cases per input fuzzer (the worker fuzz, which
runs a real worker per example, gets 300) and lifts the per-test timeout."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def examples(default: int, deep: int) -> int:
    """Per-test example count for the expensive fuzzers."""
    return deep if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else default


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("HYPOTHESIS_PROFILE") == "deep":
        for item in items:
            if "tests/fuzz" in str(item.path):
                item.add_marker(pytest.mark.timeout(3600))
