"""As a person would: ``rediq-tui --demo`` in a real terminal (tmux, 80×24), keys pressed,
the screen read back with ``capture-pane``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rediq_tui.views.queues import PAUSED_MARK

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def demo_workers(data_dir: Path) -> list[str]:
    """Pids of demo worker processes serving this test's embedded server."""
    pattern = f"rediq_tui.demo.run_worker unix://{data_dir}"
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


class Terminal:
    def __init__(self, socket: str, data_dir: Path) -> None:
        self.socket = socket
        self.data_dir = data_dir
        self.tmp_path = data_dir.parent

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True)
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-t", "demo", "-p")

    def keys(self, *keys: str, pause: float = 0.4) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "demo", key)
            time.sleep(pause)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 40.0) -> str:
        screen = ""

        def seen() -> bool:
            nonlocal screen
            screen = self.screen()
            return predicate(screen)

        if not wait(seen, timeout):
            raise AssertionError(f"never saw {what}; last screen:\n{screen}")
        return screen


def shown_state(screen: str, queue: str) -> str | None:
    """The state the Tasks view shows, from its title (``payment · pending · 1-20 of 31``)."""
    for line in screen.splitlines():
        parts = line.strip().split(" · ")
        if len(parts) >= 3 and parts[0] == queue:
            return parts[1]
    return None


def row(screen: str, name: str) -> str:
    return next((line for line in screen.splitlines() if line.strip().startswith(name + " ")), "")


def column(screen: str, name: str, index: int) -> float:
    """A number from a queue row at 80 columns: 1 pending, 2 active, 3 dead, 4 ok/m, 5 err/m."""
    cells = [c for c in row(screen, name).split() if c != PAUSED_MARK]  # the paused mark follows the name
    try:
        return float(cells[index].replace(",", "")) if len(cells) > index else -1
    except ValueError:
        return -1


def valkey_running(tmp_path: Path) -> bool:
    """Whether this test's embedded valkey-server (its data directory is under tmp_path) runs."""
    found = subprocess.run(["pgrep", "-f", f"valkey-server.*{tmp_path}"], capture_output=True, text=True)
    return bool(found.stdout.split())


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: .ci/run installs it (apt-get install tmux)")
    term = Terminal(f"rediq-e2e-{uuid.uuid4().hex[:8]}", tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TMUX")}
    env.update(
        REDIQ_DATA_DIR=str(term.data_dir),
        REDIQ_CONFIG=str(tmp_path / "none.toml"),
        REDIQ_DEMO_PACE="0.3",
        PYTHONPATH=str(ROOT),
        TERM="xterm-256color",
    )
    command = f"cd {ROOT} && {sys.executable} -m rediq_tui --demo --no-mouse"
    subprocess.run(
        ["tmux", "-L", term.socket, "new-session", "-d", "-s", "demo", "-x", "80", "-y", "24", command],
        env=env,
        check=True,
    )
    term.tmux("select-pane", "-t", "demo", "-T", "rediq-e2e-title")
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True)
        wait(lambda: not demo_workers(term.data_dir), 30)
        subprocess.run(["pkill", "-f", f"valkey-server.*{tmp_path}"], capture_output=True)


def test_demo_console_as_a_person_uses_it(demo: Terminal) -> None:
    # the queues view fills with the order pipeline
    screen = demo.wait_for(lambda s: "Queues ·" in s and column(s, "inventory", 4) > 0, "live queue counts")
    for queue in ("inventory", "payment", "shipping", "notifications", "cancellations"):
        assert row(screen, queue), f"no row for {queue}"
    assert all(len(line) <= 80 for line in screen.splitlines())

    # workers view: the demo's two workers are alive
    demo.keys("2")
    screen = demo.wait_for(lambda s: "Workers · 2 live" in s, "two live workers")
    assert screen.count("/6") == 2  # busy/concurrency of each worker

    # pause payment from the queues view: its row shows the pause flag and work piles up
    demo.keys("1", "g", "j", "j", "j", "j", "P")
    screen = demo.wait_for(lambda s: PAUSED_MARK in row(s, "payment"), "payment paused")
    pending_then = column(screen, "payment", 1)
    demo.wait_for(lambda s: column(s, "payment", 1) > pending_then, "payment's backlog growing")

    # open payment's tasks (Enter opens the state needing attention), step to pending, then
    # one task's detail with its dependencies
    demo.keys("Enter")
    demo.wait_for(lambda s: "payment · " in s and " of " in s, "payment's tasks")
    for _ in range(9):
        shown = shown_state(demo.screen(), "payment")
        if shown == "pending":
            break
        demo.keys("]")
        # one key, one step: the next check must not see the screen before this key landed
        was = shown

        def moved_on(screen: str, was: str | None = was) -> bool:
            return shown_state(screen, "payment") not in (was, None)

        demo.wait_for(moved_on, "the next state")
    demo.wait_for(lambda s: "payment · pending" in s, "payment's pending tasks")
    demo.keys("Enter")
    screen = demo.wait_for(lambda s: "State: pending" in s and "Payload" in s, "a task's detail")
    assert "depended on  inventory|" in screen and "needed by    shipping|" in screen
    assert '"amount"' in screen and '"order_id"' in screen
    task_id = next(
        ln.split("Task ", 1)[1].strip() for ln in screen.splitlines() if ln.strip().startswith("Task ")
    )

    # find by id from anywhere: Workers view, then : and the id
    demo.keys("Escape", "2", ":")
    demo.wait_for(lambda s: "Jump to a queue" in s, "the jump prompt")
    demo.keys(task_id, "Enter")
    demo.wait_for(lambda s: f"Task {task_id}" in s and "Queue: payment" in s, "the task found by its id")

    # the Redis page
    demo.keys("Escape", "9")
    screen = demo.wait_for(lambda s: "Redis · valkey" in s and "Eviction:" in s, "the Redis page")
    assert "noeviction" in screen and "rediq queues" in screen

    # back to queues and resume: the backlog drains
    demo.keys("Escape", "1", "g", "j", "j", "j", "j", "P")
    demo.wait_for(
        lambda s: PAUSED_MARK not in row(s, "payment") and 0 <= column(s, "payment", 1) <= pending_then,
        "payment resumed and draining",
        timeout=60,
    )

    # nothing changed the terminal's title; quitting stops everything the demo started
    assert demo.tmux("display-message", "-p", "-t", "demo", "#{pane_title}").strip() == "rediq-e2e-title"
    assert len(demo_workers(demo.data_dir)) == 2
    demo.keys("q")
    assert wait(lambda: not demo_workers(demo.data_dir), 30), "demo workers left running after quitting"
    assert wait(lambda: not valkey_running(demo.tmp_path), 30), "the demo's Valkey left running after q"


def test_killing_the_console_does_not_orphan_demo_workers(demo: Terminal) -> None:
    demo.wait_for(lambda s: "Queues ·" in s, "the console")
    assert wait(lambda: len(demo_workers(demo.data_dir)) == 2, 20)
    demo.tmux("kill-server")  # the terminal goes away (SIGHUP, as an SSH drop)
    assert wait(lambda: not demo_workers(demo.data_dir), 30), "demo workers outlived the console"
    assert wait(lambda: not valkey_running(demo.tmp_path), 30), "the demo's Valkey outlived the console"


def test_a_hang_up_while_quitting_still_stops_the_demos_valkey(demo: Terminal) -> None:
    demo.wait_for(lambda s: "Queues ·" in s, "the console")
    assert wait(lambda: len(demo_workers(demo.data_dir)) == 2, 20)
    demo.keys("q", pause=0)
    # the console has ended and the demo is stopping its workers: the SSH link drops now
    demo.wait_for(lambda s: "stopping the demo's workers" in s, "the demo stopping", timeout=20)
    demo.tmux("kill-server")
    assert wait(lambda: not demo_workers(demo.data_dir), 30), "demo workers outlived the console"
    assert wait(lambda: not valkey_running(demo.tmp_path), 30), "a hang-up while stopping left Valkey running"
