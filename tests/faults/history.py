"""What the harness saw happen, and the checks that judge it (Jepsen-style: a history of
handler runs and of the events that may legitimately end a delivery, then invariants over it).

A *break* of a task is anything after which its current delivery may legitimately be over
without its worker knowing yet: the harness made its lease lapse (a stalled or killed worker),
killed the worker holding it, or an operator cancelled, quarantined, restored or requeued it.
A *life* of a task runs from its enqueue (or from a requeue or restore, which start its
attempts afresh) to the next such reset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RunEnd(enum.Enum):
    RUNNING = "running"
    OK = "ok"
    RAISED = "raised"
    CANCELLED = "cancelled"


@dataclass
class Run:
    """One call of the handler."""

    seq: int
    task_id: str
    worker: str
    attempt: int
    life: int
    breaks_at_start: int
    end: RunEnd = RunEnd.RUNNING
    returned_after_cancel: bool = False
    """A sync handler that returned after its worker had cancelled it (its thread runs on)."""


@dataclass
class TaskRecord:
    id: str
    max_retry: int
    unique: str | None = None
    depends_on: tuple[str, ...] = ()
    life: int = 0
    breaks: int = 0
    holder_lost: set[int] = field(default_factory=set)
    """Lives in which a worker holding a charged attempt of the task was killed or stalled
    past its lease: such an attempt may end dead without its handler having run."""
    ended: int = 0
    """Deliveries ended under their worker (a kill, or a stall past the lease)."""
    cancel_mark: tuple[int, int, int] | None = None
    """(life, ended, attempt) when a cancel was requested while the task was held (``attempt``:
    what its delivery runs, or starts, as): once that delivery is over, by a kill, a stall or
    its handler's end, the task must end cancelled in that life, never run again."""


@dataclass
class History:
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def add_task(self, record: TaskRecord) -> None:
        self.tasks[record.id] = record

    def brk(self, task_id: str, ends_delivery: bool = False) -> None:
        if task_id in self.tasks:
            self.tasks[task_id].breaks += 1
            self.tasks[task_id].ended += ends_delivery

    def new_life(self, task_id: str) -> None:
        if task_id in self.tasks:
            self.tasks[task_id].life += 1
            self.tasks[task_id].breaks += 1

    def cancel_requested(self, task_id: str, attempt: int) -> None:
        """A cancel was requested on a held task (it is flagged; its worker acts on it), whose
        delivery runs (or, reserved, would start) as ``attempt``."""
        if task_id in self.tasks:
            record = self.tasks[task_id]
            record.breaks += 1
            if record.cancel_mark is None or record.cancel_mark[0] != record.life:
                record.cancel_mark = (record.life, record.ended, attempt)

    def holder_lost(self, task_id: str) -> None:
        if task_id in self.tasks:
            record = self.tasks[task_id]
            record.holder_lost.add(record.life)
            record.breaks += 1
            record.ended += 1

    def begin(self, task_id: str, worker: str, attempt: int) -> Run:
        """A handler call starts: check it against the runs before it."""
        record = self.tasks.get(task_id)
        life = record.life if record else 0
        breaks = record.breaks if record else 0
        run = Run(len(self.runs), task_id, worker, attempt, life, breaks)
        if record is None:
            self.violations.append(f"run #{run.seq}: task {task_id} was never accepted")
        else:
            if not 1 <= attempt <= record.max_retry + 1:
                self.violations.append(
                    f"run #{run.seq}: {task_id} runs as attempt {attempt} (max_retry {record.max_retry})"
                )
            mark = record.cancel_mark
            if mark is not None and mark[0] == life and (record.ended > mark[1] or attempt > mark[2]):
                # a later attempt is a later delivery: the one the cancel was requested on ended
                # (its handler failed, or it was handed back) and the request was forgotten
                self.violations.append(
                    f"run #{run.seq}: {task_id} runs again (attempt {attempt}) after a cancel was "
                    f"requested and the delivery it was requested on (attempt {mark[2]}) ended"
                )
            for other in self.runs:
                if other.task_id != task_id:
                    continue
                if other.end is RunEnd.RUNNING and other.breaks_at_start == breaks:
                    self.violations.append(
                        f"run #{run.seq}: {task_id} started on {worker} while run #{other.seq} on "
                        f"{other.worker} was still running, and no lease of it lapsed in between"
                    )
                if other.life == life and other.end is RunEnd.OK and other.breaks_at_start == breaks:
                    self.violations.append(
                        f"run #{run.seq}: {task_id} runs again after run #{other.seq} on {other.worker} "
                        "succeeded, and nothing ended that delivery"
                    )
                if other.life == life and other.attempt == attempt:
                    self.violations.append(
                        f"run #{run.seq}: {task_id} runs attempt {attempt} a second time (run #{other.seq})"
                    )
        self.runs.append(run)
        return run

    def final_checks(self, states: dict[str, str | None]) -> list[str]:
        """After the settle phase: ``states`` maps each accepted task to its stored state."""
        problems = list(self.violations)
        for task_id, record in self.tasks.items():
            state = states.get(task_id)
            if state not in ("completed", "dead", "cancelled", "quarantined"):
                problems.append(f"{task_id} did not finish: it is {state!r} after the settle phase")
                continue
            runs = [r for r in self.runs if r.task_id == task_id]
            if state == "dead":
                ran = [r for r in runs if r.life == record.life]
                if not ran and record.life not in record.holder_lost:
                    problems.append(
                        f"{task_id} is dead without its handler having run (and no worker holding it died)"
                    )
            for run in runs:
                if run.returned_after_cancel and run.life == record.life and state == "completed":
                    problems.append(
                        f"{task_id}: run #{run.seq} on {run.worker} returned after its cancel, yet the "
                        "task is completed"
                    )
                if run.end is RunEnd.OK and run.breaks_at_start == record.breaks and state != "completed":
                    problems.append(
                        f"{task_id}: run #{run.seq} on {run.worker} succeeded and nothing ended its "
                        f"delivery, yet the task is {state}"
                    )
        return problems
