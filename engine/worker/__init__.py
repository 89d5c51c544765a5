"""The worker: leases tasks, runs handlers, reports outcomes.

- ``core``: the exchange with Redis as a state machine with no I/O: how one task is delivered,
  started, acknowledged and recovered;
- ``slots``: what the worker holds (running tasks, reserved ones waiting for a slot);
- ``driver``: ``Worker``, the asyncio loop that feeds the core and performs its requests, and
  the running of each handler;
- ``loops``: the background loops (heartbeat, hand-off inbox, wake-ups, maintenance, burst);
- ``protocol``: the worker's calls to the Lua scripts and the parsing of their replies;
- ``runners``: where sync handlers run (a thread, a child process);
- ``options``: ``WorkerOptions`` and the effective values derived from them;
- ``context``: ``TaskContext`` (what a handler gets) and ``TaskOutcome`` (what listeners get).
"""

from engine.errors import ConnectionFailed
from engine.worker.context import TaskContext, TaskOutcome
from engine.worker.core import FencedCall, Outcome
from engine.worker.driver import Worker, run_worker
from engine.worker.options import WorkerOptions, loop_factory

__all__ = [
    "ConnectionFailed",
    "FencedCall",
    "Outcome",
    "TaskContext",
    "TaskOutcome",
    "Worker",
    "WorkerOptions",
    "loop_factory",
    "run_worker",
]
