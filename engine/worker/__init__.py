"""The worker: leases tasks, runs handlers, reports outcomes.

- ``core``: the exchange as a state machine with no I/O (how one task is delivered, started,
  acknowledged and recovered);
- ``driver``: ``Worker``, the asyncio loop that feeds the core and performs its requests;
- ``protocol``: the worker's calls to the Lua scripts and the parsing of their replies;
- ``runners``: where handlers run (the event loop, a thread, a child process);
- ``options``: ``WorkerOptions`` and the effective values derived from them.
"""

from engine.errors import ConnectionFailed
from engine.worker.driver import TaskContext, TaskOutcome, Worker, WorkerOptions, loop_factory, run_worker

__all__ = [
    "ConnectionFailed",
    "TaskContext",
    "TaskOutcome",
    "Worker",
    "WorkerOptions",
    "loop_factory",
    "run_worker",
]
