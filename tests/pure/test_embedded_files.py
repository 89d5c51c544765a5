"""The embedded server's bookkeeping files, without starting a server: a pid file left by a
server that died is cleaned up by ``stop``; a data directory locked by another process for too
long is a one-line error naming the lock file; a start that left no log says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import embedded


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stop_cleans_up_after_a_server_that_died(tmp_path: Path) -> None:
    (tmp_path / embedded.PID_NAME).write_text(f"{dead_pid()}\n")
    (tmp_path / embedded.URL_NAME).write_text("unix:///nowhere.sock\n")
    assert embedded.stop_server(directory=tmp_path) is None
    assert not (tmp_path / embedded.PID_NAME).exists() and not (tmp_path / embedded.URL_NAME).exists()


def test_stop_with_nothing_there_is_a_no_op(tmp_path: Path) -> None:
    assert embedded.stop_server(directory=tmp_path) is None


def test_a_data_directory_locked_too_long_is_one_line_naming_the_lock(tmp_path: Path) -> None:
    with embedded._locked(tmp_path), pytest.raises(embedded.EmbeddedServerError) as info:
        with embedded._locked(tmp_path, timeout=0.2):
            pass
    text = str(info.value)
    assert str(tmp_path / embedded.LOCK_NAME) in text and "\n" not in text
    with embedded._locked(tmp_path, timeout=0.2):  # released: the next one gets it at once
        pass


def test_a_start_that_left_no_log_says_so(tmp_path: Path) -> None:
    assert embedded._last_log_line(tmp_path) == "no log"


def test_a_server_that_died_is_not_running(tmp_path: Path) -> None:
    (tmp_path / embedded.PID_NAME).write_text(f"{dead_pid()}\n")
    (tmp_path / embedded.URL_NAME).write_text("unix:///nowhere.sock\n")
    assert embedded._running(tmp_path) is None
