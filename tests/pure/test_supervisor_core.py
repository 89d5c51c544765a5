"""``rediq-worker --processes N``: the supervisor's decisions (``SupervisorCore``: restart with
backoff, give up on a crash loop, leave finished children stopped, one forward per signal) and
the validation of ``--processes`` / ``WORKER_PROCESSES``. No process is started here."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import EXIT_USAGE, run
from engine.cli.worker_run import worker_run
from engine.config import RediqConfig, check_processes, load_config
from engine.errors import InvalidConfig
from engine.worker.supervisor import (
    BACKOFF_MAX_S,
    EXIT_CRASH_LOOP,
    MAX_CRASHES,
    SAME_SIGNAL_S,
    STABLE_S,
    GiveUp,
    LeaveStopped,
    Restart,
    SlotState,
    SupervisorCore,
    backoff_s,
    process_count,
    shell_code,
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in RediqConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_a_crash_is_restarted_after_a_doubling_backoff_capped_at_30_s() -> None:
    assert [backoff_s(k) for k in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_s(20) == BACKOFF_MAX_S == 30.0
    core = SupervisorCore(2)
    core.started(0, now=0.0)
    core.started(1, now=0.0)
    assert core.exited(0, -signal.SIGKILL, now=5.0) == Restart(0, 5.5, 1)
    assert core.due(5.4) == [] and core.due(5.5) == [0]
    assert core.next_restart_at() == 5.5
    core.started(0, now=5.5)
    assert core.exited(0, 1, now=6.0) == Restart(0, 7.0, 2)
    assert core.slots[1].state is SlotState.RUNNING  # the other child is untouched


def test_five_quick_crashes_in_a_row_give_up_and_stop_the_others() -> None:
    core = SupervisorCore(2)
    now = 0.0
    core.started(0, now)
    core.started(1, now)
    decisions = []
    for _ in range(MAX_CRASHES):
        core.started(0, now)
        now += 1.0
        decisions.append(core.exited(0, 3, now))
    assert all(isinstance(d, Restart) for d in decisions[:-1])
    assert decisions[-1] == GiveUp(0, MAX_CRASHES)
    assert core.stopping and core.gave_up and not core.finished  # child 1 still drains
    assert core.exited(1, 0, now + 1) == LeaveStopped(1)
    assert core.finished and core.exit_code() == EXIT_CRASH_LOOP == 1


def test_a_child_that_ran_a_while_before_crashing_starts_its_count_again() -> None:
    core = SupervisorCore(1)
    now = 0.0
    for _ in range(MAX_CRASHES - 1):
        core.started(0, now)
        now += 1.0
        core.exited(0, 1, now)
    core.started(0, now)
    now += STABLE_S  # a long healthy run, then a crash: not a loop
    assert core.exited(0, 1, now) == Restart(0, now + backoff_s(1), 1)


def test_a_clean_exit_is_not_restarted_and_ends_the_supervisor_with_0() -> None:
    core = SupervisorCore(2)  # --burst: each child exits 0 once the queues are drained
    core.started(0, 0.0)
    core.started(1, 0.0)
    assert core.exited(0, 0, 1.0) == LeaveStopped(0)
    assert not core.finished
    assert core.exited(1, 0, 2.0) == LeaveStopped(1)
    assert core.finished and core.exit_code() == 0


def test_after_a_signal_nothing_is_restarted_and_a_waiting_slot_stays_down() -> None:
    core = SupervisorCore(3)
    for slot in range(3):
        core.started(slot, 0.0)
    core.exited(0, -signal.SIGKILL, 1.0)  # waits for its restart...
    assert core.signalled(1.2)  # ...when SIGTERM arrives
    assert core.due(100.0) == []
    assert core.exited(1, 0, 2.0) == LeaveStopped(1)
    # killed by the forwarded signal before it installed its own handler: a clean stop
    assert core.exited(2, -signal.SIGTERM, 2.0) == LeaveStopped(2)
    assert core.finished and core.exit_code() == 0


def test_a_child_that_failed_its_drain_gives_its_exit_code() -> None:
    core = SupervisorCore(2)
    core.started(0, 0.0)
    core.started(1, 0.0)
    core.signalled(1.0)
    core.exited(0, 0, 2.0)
    core.exited(1, -signal.SIGKILL, 2.0)
    assert core.exit_code() == shell_code(-signal.SIGKILL) == 137


def test_one_signal_delivered_twice_at_once_is_forwarded_once_a_later_one_again() -> None:
    core = SupervisorCore(1)
    assert core.signalled(10.0)  # forwarded: the children drain
    assert not core.signalled(10.0 + SAME_SIGNAL_S / 2)  # `timeout` / a group-wide Ctrl-C
    assert core.signalled(10.0 + SAME_SIGNAL_S / 2 + SAME_SIGNAL_S)  # the operator's second one


def test_process_counts() -> None:
    assert check_processes("auto") == "auto" and check_processes(" AUTO ") == "auto"
    assert check_processes("4") == 4 and check_processes(2) == 2
    assert process_count("auto", lambda: 6) == 6
    assert process_count("auto", lambda: 0) == 1
    assert process_count(3) == 3
    assert process_count("auto") >= 1  # this machine's usable cores
    with pytest.raises(ValueError, match="give 1..1024 or 'auto'"):
        check_processes(True)
    with pytest.raises(ValueError):
        SupervisorCore(0)


@pytest.mark.parametrize("value", ["0", "-1", "junk", "1.5", "1025", ""])
def test_bad_processes_flag_is_one_line_naming_the_fix_exit_64(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(worker_run, ["--app", "nothing:here", "--processes", value], "rediq-worker")
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE == 64  # as every other bad flag of the CLI (EX_USAGE)
    assert len(err.splitlines()) == 1, err
    assert "--processes" in err and "give 1..1024 or 'auto'" in err


def test_bad_worker_processes_env_is_one_line_exit_12(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_PROCESSES", "many")
    with pytest.raises(InvalidConfig, match="worker_processes='many' .from environment.*give 1..1024"):
        load_config()
    code = run(worker_run, ["--app", "nothing:here"], "rediq-worker")
    err = capsys.readouterr().err.strip()
    assert code == InvalidConfig.exit_code == 12
    assert len(err.splitlines()) == 1 and "worker_processes" in err
    monkeypatch.setenv("WORKER_PROCESSES", "auto")
    assert load_config().worker_processes == "auto"
