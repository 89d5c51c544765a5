"""An asyncio event loop on virtual time, so that an example of the fault machine replays the
same interleaving (in the manner of aiotools' and looptime's virtual clocks).

The loop's clock (``loop.time()``: what ``asyncio.sleep``, ``call_later``, ``asyncio.timeout``
and the worker's own timers read) stands still while a request is on the wire, and when the
loop has nothing to do but wait for a timer it jumps to that timer at once. Real I/O (the
requests to Valkey, one at a time: see ``Line`` in ``wire.py``) is waited for for real. So a
worker's heartbeats, polls, back-offs and a handler's timeout fire at the same points of the
request sequence in every run, however loaded the machine is; and an example takes no longer
than its round trips, even when it lets a minute of worker time pass.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any

REAL_WAIT_LIMIT_S = 60.0
"""A request on the wire gets this long (real time) to be answered."""


class _VirtualSelector:
    """Wraps the loop's selector: a wait for a timer becomes a jump of the virtual clock."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0:
            # callbacks are ready: a reply on the wire is taken only once they have all run,
            # never at whichever turn it happens to land on (that depends on the machine's load)
            return [] if self._loop.io_pending() else self._real.select(0)
        if self._loop.io_pending():
            events = self._real.select(REAL_WAIT_LIMIT_S)  # timers wait for the reply
            if not events:
                raise TimeoutError(f"a request got no reply in {REAL_WAIT_LIMIT_S} s")
            return events
        events = self._real.select(0)
        if events:
            return events
        if timeout is None:  # no timer at all: only real events can wake the loop
            return self._real.select(REAL_WAIT_LIMIT_S)
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, io_pending: Callable[[], bool]) -> None:
        super().__init__()
        self._now = 0.0
        self.io_pending = io_pending
        """True while a request is on the wire (its reply is awaited for real)."""
        real: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _VirtualSelector(real, self)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


__all__ = ["VirtualTimeLoop"]
