"""``rediq-worker --processes N``: one supervisor process running N full worker processes.

Each child is a whole worker (its own worker id, asyncio loop, leases and heartbeat), started
with ``multiprocessing``'s *spawn* method: a fresh interpreter that imports the app itself, so
no lock, connection or thread state of the supervisor is copied into it (fork after threads,
e.g. the metrics server's, is unsafe), and it behaves exactly as a worker started by hand.

- ``SupervisorCore`` (pure, no processes, no clock of its own) decides what happens when a
  child exits: restart it after an exponential backoff, leave it stopped, or give up;
- ``Supervisor`` starts the processes, forwards SIGTERM/SIGINT to every child (a second signal
  is forwarded too: each child then hands its running tasks back without waiting out its
  grace period, as a single worker does), and performs the core's decisions.

The restart rule: a child that exits non-zero (or is killed) while nobody asked the workers to
stop is restarted after ``0.5 s × 2^(k-1)`` (at most 30 s), ``k`` its crashes in a row; a child
that ran ``STABLE_S`` before it crashed starts the count again. A slot that crashes
``MAX_CRASHES`` times in a row is a crash loop (a broken deploy, Redis refusing the app): the
supervisor stops the other children (a graceful drain) and exits ``EXIT_CRASH_LOOP``. A child
that exits 0 unasked (``--burst``: its queues are drained) is not restarted. After a signal the
supervisor exits once every child has stopped: 0 if each drained cleanly, else the first
non-zero exit code of a child (128 + N for a child killed by signal N).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing.connection import wait
from typing import Any

from engine.config import MAX_PROCESSES, Processes

log = logging.getLogger("rediq.supervisor")

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0
"""A child that ran this long before crashing was not crash-looping: its count starts again."""
MAX_CRASHES = 5
SAME_SIGNAL_S = 0.5
"""Signals this close together are one: ``timeout``, a terminal's Ctrl-C or a process manager
that signals the supervisor's whole group deliver one signal twice at once, and forwarding both
would make every child skip its grace period (as a second signal from the operator does)."""
EXIT_CRASH_LOOP = 1
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess mode: each child writes its samples to files in this
directory, and the supervisor's /metrics sums them (the library's documented way)."""
SUPERVISOR_ENV = "REDIQ_SUPERVISOR"
"""Set in each child: the supervisor's ``host:pid`` (shown by ``rediq worker list``)."""


# ---------------------------------------------------------------------------------- decisions


class SlotState(Enum):
    RUNNING = "running"
    WAITING = "waiting"
    """Crashed; restarts at ``restart_at``."""
    STOPPED = "stopped"


@dataclass
class Slot:
    state: SlotState = SlotState.RUNNING
    started_at: float = 0.0
    crashes: int = 0
    """Crashes in a row, each within STABLE_S of its start."""
    restart_at: float = 0.0
    exit_code: int | None = None


@dataclass(frozen=True)
class Restart:
    slot: int
    at: float
    crashes: int


@dataclass(frozen=True)
class LeaveStopped:
    slot: int


@dataclass(frozen=True)
class GiveUp:
    slot: int
    crashes: int


Decision = Restart | LeaveStopped | GiveUp


def backoff_s(crashes: int, base_s: float = BACKOFF_BASE_S) -> float:
    """Delay before restarting a child after its ``crashes``-th crash in a row (1-based)."""
    return float(min(BACKOFF_MAX_S, base_s * 2 ** max(0, crashes - 1)))


def shell_code(exitcode: int) -> int:
    """A process's exit code as a shell shows it: 128 + N for a process killed by signal N."""
    return 128 - exitcode if exitcode < 0 else exitcode


@dataclass
class SupervisorCore:
    """What the supervisor does about its children; the process part tells it what happened."""

    processes: int
    stable_s: float = STABLE_S
    max_crashes: int = MAX_CRASHES
    backoff_base_s: float = BACKOFF_BASE_S
    slots: list[Slot] = field(init=False)
    stopping: bool = False
    """A signal arrived (or the supervisor gave up): nothing is restarted any more."""
    gave_up: bool = False
    last_signal_at: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.processes <= MAX_PROCESSES:
            raise ValueError(f"processes must be 1..{MAX_PROCESSES}, got {self.processes}")
        self.slots = [Slot() for _ in range(self.processes)]

    def started(self, slot: int, now: float) -> None:
        self.slots[slot].state = SlotState.RUNNING
        self.slots[slot].started_at = now

    def signalled(self, now: float) -> bool:
        """A SIGTERM/SIGINT arrived: whether to forward it (not when it repeats one that came
        less than ``SAME_SIGNAL_S`` ago). Stops restarts either way."""
        repeat = self.last_signal_at is not None and now - self.last_signal_at < SAME_SIGNAL_S
        self.last_signal_at = now
        self.stop()
        return not repeat

    def stop(self) -> None:
        """A signal: no restarts from now on; waiting slots stay stopped."""
        self.stopping = True
        for slot in self.slots:
            if slot.state is SlotState.WAITING:  # its crash was handled (logged, tasks recovered)
                slot.state = SlotState.STOPPED
                slot.exit_code = None

    def exited(self, slot: int, exitcode: int, now: float) -> Decision:
        """Child ``slot`` exited with ``exitcode`` (negative: killed by that signal)."""
        s = self.slots[slot]
        s.exit_code = exitcode
        if self.stopping or exitcode == 0:
            s.state = SlotState.STOPPED
            return LeaveStopped(slot)
        if now - s.started_at >= self.stable_s:
            s.crashes = 0
        s.crashes += 1
        if s.crashes >= self.max_crashes:
            s.state = SlotState.STOPPED
            self.gave_up = True
            self.stop()
            return GiveUp(slot, s.crashes)
        s.state = SlotState.WAITING
        s.restart_at = now + backoff_s(s.crashes, self.backoff_base_s)
        return Restart(slot, s.restart_at, s.crashes)

    def due(self, now: float) -> list[int]:
        """Slots whose restart time has come."""
        return [i for i, s in enumerate(self.slots) if s.state is SlotState.WAITING and s.restart_at <= now]

    def next_restart_at(self) -> float | None:
        waiting = [s.restart_at for s in self.slots if s.state is SlotState.WAITING]
        return min(waiting) if waiting else None

    @property
    def running(self) -> int:
        return sum(1 for s in self.slots if s.state is SlotState.RUNNING)

    @property
    def finished(self) -> bool:
        return all(s.state is SlotState.STOPPED for s in self.slots)

    def exit_code(self) -> int:
        """``EXIT_CRASH_LOOP`` after giving up; else 0 when every child's last exit was 0 (or,
        once stopping, a kill by the forwarded signal before it installed its own handler, or
        a crash it was waiting to be restarted from); else the first such child's code."""
        if self.gave_up:
            return EXIT_CRASH_LOOP
        stop_signals = (-signal.SIGTERM, -signal.SIGINT)
        for s in self.slots:
            if s.exit_code and not (self.stopping and s.exit_code in stop_signals):
                return shell_code(s.exit_code)
        return 0


def process_count(value: Processes, cpu_count: Callable[[], int] | None = None) -> int:
    """The number of children for a checked ``--processes`` value (``auto``: one per usable core)."""
    if value == "auto":
        return max(1, (cpu_count or usable_cores)())
    return value


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return max(1, int(counter() or 1))
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------- processes


class Supervisor:
    """Runs ``target(*args)`` in ``processes`` spawned children until a signal, restarting
    crashed ones as ``SupervisorCore`` decides. ``run()`` (in the main thread) returns the exit
    code. Signal handlers only note the signal; the loop forwards it (a self-pipe wakes it)."""

    def __init__(
        self,
        processes: int,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        *,
        start_method: str = "spawn",
        metrics_dir: str | None = None,
        core: SupervisorCore | None = None,
    ) -> None:
        self.core = core or SupervisorCore(processes)
        self.target = target
        self.args = tuple(args)
        self._mp: Any = multiprocessing.get_context(start_method)
        self.children: list[Any] = [None] * processes
        self.metrics_dir = metrics_dir
        self.restarts = 0
        self._signals: list[int] = []
        self._lock = threading.Lock()
        """The loop and the metrics server's thread (``alive``) both read ``children``."""

    def alive(self) -> int:
        """Children running now (what /health counts)."""
        with self._lock:
            return sum(1 for c in self.children if c is not None and c.exitcode is None)

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._note_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.core.processes):
                self._start(slot)
            self._loop(wake_r)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
        return self.core.exit_code()

    def _note_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _loop(self, wake: int) -> None:
        core = self.core
        while True:
            self._forward_signals(wake)
            if core.finished:
                return
            now = time.monotonic()
            for slot in core.due(now):
                self.restarts += 1
                self._start(slot)
            restart_at = core.next_restart_at()
            timeout = None if restart_at is None else max(0.0, restart_at - now)
            with self._lock:
                running = {
                    c.sentinel: (i, c)
                    for i, c in enumerate(self.children)
                    if c is not None and core.slots[i].state is SlotState.RUNNING
                }
            for ready in wait([wake, *running], timeout):
                if ready in running:
                    slot, child = running[ready]
                    child.join()
                    self._exited(slot, child)

    def _forward_signals(self, wake: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(wake, 512):
                pass
        while self._signals:
            signum = self._signals.pop(0)
            if self.core.signalled(time.monotonic()):
                self.forward(signum)

    def _start(self, slot: int) -> None:
        child = self._mp.Process(target=self.target, args=self.args, name=f"rediq-worker-{slot + 1}")
        child.start()
        with self._lock:
            self.children[slot] = child
        self.core.started(slot, time.monotonic())
        log.info("started worker process %d of %d (pid %s)", slot + 1, self.core.processes, child.pid)

    def forward(self, signum: int) -> None:
        """Stop restarting, and send ``signum`` to every running child (a second one makes
        them hand running tasks back at once)."""
        self.core.stop()
        with self._lock:
            children = [c for c in self.children if c is not None and c.exitcode is None]
        log.info("%s: sent to %d worker process(es)", signal.Signals(signum).name, len(children))
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _exited(self, slot: int, child: Any) -> None:
        code = int(child.exitcode)
        if self.metrics_dir is not None:
            mark_dead(child.pid)
        decision = self.core.exited(slot, code, time.monotonic())
        match decision:
            case Restart():
                log.warning(
                    "worker process %d (pid %s) exited with code %d; restarting it in %.1f s "
                    "(crash %d in a row; %d in a row is a crash loop)",
                    slot + 1,
                    child.pid,
                    shell_code(code),
                    max(0.0, decision.at - time.monotonic()),
                    decision.crashes,
                    self.core.max_crashes,
                )
            case GiveUp():
                log.error(
                    "worker process %d crashed %d times in a row (each within %.0f s of its start): "
                    "giving up, stopping the other worker processes",
                    slot + 1,
                    decision.crashes,
                    self.core.stable_s,
                )
                self.forward(signal.SIGTERM)
            case LeaveStopped():
                log.info(
                    "worker process %d (pid %s) exited with code %d", slot + 1, child.pid, shell_code(code)
                )


def mark_dead(pid: int | None) -> None:
    """Drop a dead child's live gauges (in flight, overdue slots) from the merged metrics;
    its counters stay (totals never go back)."""
    if pid is None:
        return
    # only when metrics are served
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped in the library


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """A directory for this run's multiprocess metrics, set in the environment the children
    inherit, and removed when the supervisor ends (stale files would add to the next run)."""
    path = tempfile.mkdtemp(prefix="rediq-metrics-")
    previous = os.environ.get(METRICS_DIR_ENV)
    os.environ[METRICS_DIR_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(METRICS_DIR_ENV, None)
        else:
            os.environ[METRICS_DIR_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def watch_parent() -> None:
    """In a child: drain (SIGTERM to itself) if the supervisor dies without forwarding a
    signal (SIGKILL, OOM killer), so no worker outlives it unsupervised."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="rediq-watch-supervisor", daemon=True).start()
