"""What a worker holds: tasks running in its slots and leased tasks waiting for one.

Pure bookkeeping (no I/O, no clock) for ``engine.worker.core``. A slot is taken from the moment
a task's handler is started until its outcome is in: a sync handler past its timeout keeps its
slot until its thread returns, so the worker takes less work instead of burying tasks.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from engine.worker.protocol import Job

Held = dict[str, list[tuple[str, str]]]
"""Per queue, (task id, delivery token) of every task a worker holds (what a heartbeat extends)."""


class _Buffered(NamedTuple):
    """A leased task waiting for a free slot. A tuple, so the heap compares in C; ``arrival``
    is unique, so ``job`` is never compared."""

    rank: int
    priority: int
    arrival: int
    job: Job


class Slots:
    """Running tasks (by id) and the buffer of reserved ones (best first: queue order, then
    priority, then arrival)."""

    def __init__(self, queues: Sequence[str], concurrency: int, prefetch: int) -> None:
        self.concurrency = concurrency
        self.prefetch = prefetch
        self._rank = {q: i for i, q in enumerate(queues)}
        self.running: dict[str, Job] = {}
        self.buffer: list[_Buffered] = []
        self.handoff_starting = 0
        """Handed-off tasks whose start mark is in flight: they hold a slot, and run once its
        reply says they started (never before: Redis must have charged the attempt)."""
        self.held_for_take = 0
        """Slots kept free for the hand-off an inbox loop's take waits for (``take.lua``): the
        task it moves starts on the server, so its slot must be free when it lands."""
        self._arrival = 0

    def free(self, stopping: bool) -> int:
        """Slots a task may start in now (none once the worker is stopping)."""
        if stopping:
            return 0
        return self.concurrency - len(self.running) - self.handoff_starting - self.held_for_take

    @property
    def idle(self) -> bool:
        """Nothing running, reserved or starting (a slot a take holds is an idle one)."""
        return not self.running and not self.buffer and not self.handoff_starting

    @property
    def capacity(self) -> int:
        """How many more tasks the worker may lease: free slots, those a take holds, plus the
        prefetch allowance. A held slot counts: a task a dequeue leases while the take waits
        (one that falls due, or is grouped: not handed off) comes reserved, and the take is
        ended to start it (``Takes.to_wake``). Without prefetch, a worker whose every free slot
        a take held leased nothing until the take came back."""
        return self.concurrency + self.prefetch - len(self.running) - len(self.buffer) - self.handoff_starting

    def reserve(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._arrival += 1
            heapq.heappush(
                self.buffer, _Buffered(self._rank.get(job.queue, 0), job.priority, self._arrival, job)
            )

    def take_reserved(self, n: int) -> dict[str, list[Job]]:
        """Up to ``n`` reserved tasks, best first, grouped by queue."""
        taken: dict[str, list[Job]] = defaultdict(list)
        for _ in range(min(n, len(self.buffer))):
            job = heapq.heappop(self.buffer).job
            taken[job.queue].append(job)
        return taken

    def take_all_reserved(self) -> list[Job]:
        jobs = [b.job for b in self.buffer]
        self.buffer.clear()
        return jobs

    def drop_reserved(self, task_id: str, token: str) -> None:
        """Forget this delivery of a reserved task (a later delivery of it is left alone)."""
        kept = [b for b in self.buffer if b.job.id != task_id or b.job.token != token]
        if len(kept) != len(self.buffer):
            self.buffer = kept
            heapq.heapify(self.buffer)

    def held(self) -> Held:
        held: Held = defaultdict(list)
        for job in self.running.values():
            held[job.queue].append((job.id, job.token))
        for item in self.buffer:
            held[item.job.queue].append((item.job.id, item.job.token))
        return held
