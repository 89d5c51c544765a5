"""Sync handlers in the fault machine: ``def`` handlers run by the worker's thread runner
(``engine/worker/runners.py``), each blocked until the test says how it ends (ok, raise, a
little later, or never: hung, past its timeout).

On virtual time (``vtime.py``) a thread must not race the loop: the runner's thread pool is
replaced, for the machine's loop only, by one that hands each call to a thread and holds the
loop until the call blocks at its gate (``wait_at``) or returns; a gate opened by the test
(``open_gate``) holds the loop until the call has returned, then hands its result to the
runner at that point of the loop. The runner's own logic (the wait for the call's return, a slot kept by a
handler past its timeout, ``overdue``) runs unchanged.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.worker import runners
from tests.faults.history import RunEnd
from tests.faults.vtime import VirtualTimeLoop

REAL_WAIT_S = 30.0
_local = threading.local()


@dataclass
class Gate:
    """One call in a handler thread, and where it waits for the test's verdict."""

    loop: asyncio.AbstractEventLoop
    call: runners.ThreadCall
    parked: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    end: RunEnd = RunEnd.OK
    result: Any = None
    exc: BaseException | None = None


def current_gate() -> Gate:
    """(in a handler's thread) The gate of the call this thread runs."""
    gate: Gate = _local.gate
    return gate


@contextmanager
def stepped_threads() -> Iterator[None]:
    real_submit = runners.DaemonThreadPool.submit

    def submit(pool: runners.DaemonThreadPool, fn: Callable[[], Any]) -> runners.ThreadCall:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualTimeLoop):
            return real_submit(pool, fn)
        gate = Gate(loop, runners.ThreadCall(loop, fn))

        def body() -> None:
            _local.gate = gate
            try:
                gate.result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the runner, as the pool does
                gate.exc = exc
            finally:
                gate.finished.set()
                gate.parked.set()

        threading.Thread(target=body, name="faults-handler", daemon=True).start()
        if not gate.parked.wait(REAL_WAIT_S):
            raise TimeoutError("a handler thread neither blocked nor returned")
        if gate.finished.is_set():  # it never waited at a gate
            loop.call_soon(gate.call.settle, gate.result, gate.exc)
        return gate.call

    runners.DaemonThreadPool.submit = submit  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        runners.DaemonThreadPool.submit = real_submit  # type: ignore[method-assign]


def open_gate(gate: Gate, end: RunEnd) -> None:
    """(on the loop) Let a blocked handler's thread return or raise; its result reaches the
    runner at this point of the loop."""
    gate.end = end
    gate.opened.set()
    if not gate.finished.wait(REAL_WAIT_S):
        raise TimeoutError("a released handler thread did not return")
    gate.loop.call_soon(gate.call.settle, gate.result, gate.exc)


def wait_at(gate: Gate, task_id: str) -> str:
    """(in the handler's thread) Block until the test decides; then end as it said."""
    gate.parked.set()
    gate.opened.wait()
    if gate.end is RunEnd.RAISED:
        raise RuntimeError(f"sync handler of {task_id} failed")
    return "ok"


__all__ = ["Gate", "current_gate", "open_gate", "stepped_threads", "wait_at"]
