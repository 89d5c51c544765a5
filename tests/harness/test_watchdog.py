"""The per-test watchdog (tests/watchdog.py) ends a test that hangs in teardown after it failed,
where pytest-timeout and pytest's faulthandler plugin have both stopped their timers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANGING = """
import time

import pytest


@pytest.fixture
def hangs_in_teardown():
    yield
    time.sleep(600)


@pytest.mark.timeout(1)
def test_fails_then_hangs(hangs_in_teardown):
    assert False, "failed first"
"""


def test_a_teardown_hanging_after_a_failure_is_ended_with_its_stacks(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGING)
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.watchdog", "-p", "no:cacheprovider"]
        + ["-o", "watchdog_margin=2", "--rootdir", str(tmp_path), str(tmp_path / "test_hangs.py")],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - began
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeout (0:00:0" in done.stderr  # faulthandler's header, then every thread's stack
    assert "in hangs_in_teardown" in done.stderr
    assert took < 40, took
