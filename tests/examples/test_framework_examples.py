"""The framework examples' own tests pass when run the way a user runs them: plain pytest from
the repository root, the rediq plugin (a private Valkey) found through its entry point, a real
worker in process. Each example's test file says what it checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example_tests(path: str) -> subprocess.CompletedProcess[str]:
    inherited = ("REDIS_URL", "REDIQ_PREFIX", "DJANGO_SETTINGS_MODULE", "SHOP_DATABASE")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(("example", "tests"), [("fastapi_app", 5), ("django_project", 4)])
def test_the_examples_own_tests_pass(example: str, tests: int) -> None:
    result = run_example_tests(f"examples/{example}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{tests} passed" in result.stdout  # every one ran: none skipped for a missing extra
