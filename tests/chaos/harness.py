"""Shared machinery for the chaos scenarios: scale, worker processes, the ledger and the
pure checkers that turn what happened into one figure line (controls feed them bad data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("REDIQ_CHAOS_RESULTS", "/tmp/rediq-chaos-results.txt"))


def scale() -> float:
    """``REDIQ_CHAOS_SCALE`` (1.0 = the full sizes of issue 9; default 0.1 keeps the suite
    under 15 minutes on 2 cores)."""
    return float(os.environ.get("REDIQ_CHAOS_SCALE", "0.1"))


def scaled(full: int, minimum: int = 10) -> int:
    return max(minimum, int(full * scale()))


@dataclass
class Figure:
    scenario: str
    submitted: int
    completed: int
    lost: int
    duplicates: int
    max_delay_s: float
    extra: str = ""

    def line(self) -> str:
        text = (
            f"submitted {self.submitted}, completed {self.completed}, lost {self.lost}, "
            f"duplicates {self.duplicates}, max delay {self.max_delay_s:.2f}s"
        )
        return text + (f" ({self.extra})" if self.extra else "")

    def report(self) -> None:
        line = f"[{self.scenario}] scale={scale()} {self.line()}"
        print("\nFIGURE " + line, flush=True)
        with RESULTS.open("a") as fh:
            fh.write(line + "\n")


# ------------------------------------------------------------------------------ processes


@dataclass
class WorkerPool:
    """Chaos worker processes (``tests/chaos/worker_main.py``) that log to ``log_dir``."""

    url: str
    queues: str
    ledger: Path
    log_dir: Path
    lease_s: float = 2.0
    concurrency: int = 4
    heartbeat_s: float | None = None
    prefix: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    spawned: int = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIQ_CHAOS_LEDGER": str(self.ledger), **self.env}
        self.spawned += 1
        log = open(self.log_dir / f"worker-{self.spawned}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                *self.prefix,
                sys.executable,
                str(ROOT / "tests/chaos/worker_main.py"),
                self.url,
                self.queues,
                str(self.lease_s),
                str(self.concurrency),
                str(self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def start(self, n: int) -> WorkerPool:
        for _ in range(n):
            self.spawn()
        return self

    @property
    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        self.killed.add(proc.pid)
        proc.kill()
        proc.wait(10)

    def stop_all(self, timeout: float = 20) -> list[int | None]:
        codes: list[int | None] = []
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(5))
        return codes

    def logs(self) -> str:
        return "\n".join(f.read_text(errors="replace") for f in sorted(self.log_dir.glob("worker-*.log")))


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ------------------------------------------------------------------------------ ledger


@dataclass(frozen=True)
class Run:
    event: str
    task_id: str
    attempt: int
    pid: int
    at: float


def read_ledger(directory: Path) -> list[Run]:
    runs: list[Run] = []
    for path in directory.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:  # a half-written last line of a killed process is skipped
                runs.append(Run(parts[0], parts[1], int(parts[2]), int(parts[3]), float(parts[4])))
    return runs


def starts_by_task(runs: Iterable[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.event == "start":
            out[r.task_id].append(r)
    for v in out.values():
        v.sort(key=lambda r: r.at)
    return out


def unexplained_duplicates(runs: Iterable[Run], killed_pids: set[int]) -> list[str]:
    """Tasks started more than once where an earlier execution was NOT in a worker that died:
    a duplicate is only allowed when the worker that ran it was killed mid-task."""
    bad = []
    for task_id, starts in starts_by_task(runs).items():
        for earlier in starts[:-1]:
            if earlier.pid not in killed_pids:
                bad.append(task_id)
                break
    return bad


def task_states(r: redis.Redis, queue: str, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """HMGET state/enq/finished/attempts for many tasks, pipelined."""
    out: dict[str, dict[str, str]] = {}
    base = f"rediq:{{{queue}}}:t:"
    for i in range(0, len(ids), 2000):
        chunk = ids[i : i + 2000]
        pipe = r.pipeline(transaction=False)
        for t in chunk:
            pipe.hmget(base + t, "state", "enq", "finished", "attempts")
        for t, vals in zip(chunk, pipe.execute(), strict=True):
            if vals[0] is not None:
                out[t] = dict(zip(("state", "enq", "finished", "attempts"), vals, strict=True))
    return out


def lease_expiries(r: redis.Redis, queue: str, ids: Sequence[str]) -> list[str]:
    """Ids of tasks that waited for a lease to run out at least once (their history says so):
    held by a worker that died, or leased by a request whose reply nobody received."""
    out: list[str] = []
    base = f"rediq:{{{queue}}}:h:"
    for i in range(0, len(ids), 2000):
        chunk = ids[i : i + 2000]
        pipe = r.pipeline(transaction=False)
        for t in chunk:
            pipe.lrange(base + t, 0, -1)
        for t, history in zip(chunk, pipe.execute(), strict=True):
            if any("expired" in json.loads(entry)[2] for entry in history):
                out.append(t)
    return out


def completion_figure(
    scenario: str,
    submitted: Sequence[str],
    states: dict[str, dict[str, str]],
    runs: Sequence[Run],
    extra: str = "",
) -> Figure:
    """Lost = an acknowledged task that is not completed; duplicates = tasks whose handler
    started more than once; max delay = the longest enqueue-to-completion time."""
    completed = [t for t in submitted if states.get(t, {}).get("state") == "completed"]
    delays = [
        (int(states[t]["finished"]) - int(states[t]["enq"])) / 1000
        for t in completed
        if states[t].get("finished") and states[t].get("enq")
    ]
    starts = starts_by_task(runs)
    duplicates = sum(1 for t in submitted if len(starts.get(t, [])) > 1)
    return Figure(
        scenario,
        len(submitted),
        len(completed),
        len(submitted) - len(completed),
        duplicates,
        max(delays, default=0.0),
        extra,
    )
