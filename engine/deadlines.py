"""Time limits without a timer each: one loop timer for the earliest deadline. The worker keeps
its handlers' limits here, and the asyncio backend those of its round trips (engine.backend).

``asyncio.timeout`` arms and cancels a loop timer for every task and keeps a state machine
around it: about 14 µs of the worker's CPU per task on a slow 2-core machine, close to a tenth
of a no-op task's whole cost in a drain (docs/reference/performance.md). A worker's deadlines
live in one ``Deadlines`` instead: entering a ``Deadline`` records its time, and a single timer,
armed for the earliest deadline of those entered, cancels every task whose time has come and
arms itself for the next. In a drain every new deadline lies after the one armed, so a task
costs no timer operation at all.

A ``Deadline`` behaves as ``asyncio.timeout`` does where the worker relies on it: on expiry
its task is cancelled, and leaving the block turns that cancellation into ``TimeoutError``
(``expired()`` tells it from a ``TimeoutError`` the handler raised); a cancellation from
elsewhere stays a ``CancelledError``; ``reschedule(None)`` suspends the limit and
``reschedule(when)`` sets it anew (``runners`` restarts it when a child process is ready).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

EARLY_S = 0.001
"""A deadline this close is due: the loop may run a timer up to its clock's resolution early."""


class Deadline:
    """One time limit (a handler's, a round trip's): ``async with deadlines.start(timeout_s): ...``."""

    __slots__ = ("_cancelling", "_expired", "_task", "_watch", "when")

    def __init__(self, watch: Deadlines, when: float | None) -> None:
        self._watch = watch
        self.when = when
        """Loop time at which the task is cancelled; None: no limit for now."""
        self._task: asyncio.Task[object] | None = None
        self._expired = False
        self._cancelling = 0

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline is entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._watch.add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._watch.discard(self)
        # forgotten with the block: a reschedule() after it (a runner's late callback) must not
        # register the limit again and cancel whatever the task is doing by then
        task, self._task = self._task, None
        if self._expired and task is not None:
            # the cancellation was ours: take it back, and report it as the time limit
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expired(self) -> bool:
        """Whether the limit cancelled the task (not a TimeoutError the handler raised)."""
        return self._expired

    def reschedule(self, when: float | None) -> None:
        """Set the limit to loop time ``when``; None suspends it. No effect once expired or
        once the block has ended."""
        if self._expired:
            return
        self.when = when
        if self._task is not None:
            self._watch.add(self)

    def _fire(self) -> None:
        task = self._task
        if self._expired or task is None or task.done():
            return
        self._expired = True
        task.cancel()


class Deadlines:
    """A worker's (or a backend's) deadlines, watched by one timer of its loop."""

    __slots__ = ("_armed_at", "_handle", "_live", "_loop")

    def __init__(self) -> None:
        self._live: set[Deadline] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout_s: float) -> Deadline:
        """A limit of ``timeout_s`` from now (it takes effect once entered)."""
        return Deadline(self, self._running_loop().time() + timeout_s)

    def __len__(self) -> int:
        return len(self._live)

    def add(self, deadline: Deadline) -> None:
        if deadline.when is None:
            self._live.discard(deadline)
            return
        self._live.add(deadline)
        if deadline.when < self._armed_at:
            self._arm(deadline.when)

    def discard(self, deadline: Deadline) -> None:
        # the timer stays: when it runs it finds nothing due and arms for the next deadline
        self._live.discard(deadline)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (a worker run again): the old timer is gone
            self._loop, self._handle, self._armed_at = loop, None, math.inf
            self._live.clear()
        return loop

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._running_loop().call_at(when, self._check)
        self._armed_at = when

    def _check(self) -> None:
        self._handle, self._armed_at = None, math.inf
        now = self._running_loop().time()
        due = [d for d in self._live if d.when is not None and d.when <= now + EARLY_S]
        for deadline in due:
            self._live.discard(deadline)
            deadline._fire()
        upcoming = [d.when for d in self._live if d.when is not None]
        if upcoming:
            self._arm(min(upcoming))
