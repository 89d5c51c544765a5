"""The fault layer: a stand-in for the redis asyncio client a ``Worker`` is given
(``Worker(..., redis=FaultyRedis(...))``), so every request the worker makes to Redis (one
command, or one pipeline of calls) crosses a ``Wire`` that can, as the test decides:

- drop the request (raise ``ConnectionError`` without sending it),
- drop the reply (send it, let the server run it, then raise ``ConnectionError``),
- duplicate it (send it twice; the caller gets the second reply, as after redis-py's resend),
- hold it (not sent until the test releases it: a delay whose length the test chooses),
- freeze the worker (every request and every reply waits: a stalled process), or
- kill it (every request fails, replies in flight are dropped; see ``WorkerHandle.kill``).

Faults are *armed* by the test for the next request carrying a given call (``start``, ``ack``,
``BLPOP``...), so the schedule comes from Hypothesis' draws, never from randomness or time.

The stand-in hides the client's connection pool, so ``engine.backend`` sends everything through
``execute_command`` and ``pipeline`` (its Cluster path: same requests, same replies) and
nothing slips past the wire. It sits above the real client, so a fault it injects is never
retried by redis-py: the worker's own recovery has to cope.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from engine import lua

BLPOP_TIMEOUT_S = 0.1
"""The inbox loops' ``BLPOP`` waits this long instead of a second: a worker's graceful stop
waits for its inbox loops, and the harness stops workers in every example. Same requests and
replies, only a shorter blocking poll."""


class Fault(enum.Enum):
    DROP_REQUEST = "drop request"
    DROP_REPLY = "drop reply"
    DUPLICATE = "duplicate"
    HOLD = "hold"


class Killed(RedisConnectionError):
    """What a killed worker's requests raise (its connections are gone)."""


class Injected(RedisConnectionError):
    """A fault the test injected."""


@cache
def _script_of_function() -> dict[str, str]:
    lib = lua.library()
    names = {lib.function(name): name for name in lua.SCRIPT_NAMES}
    names.update({lua.script(name).sha: name for name in lua.SCRIPT_NAMES})
    return names


def label_of(command: Sequence[Any]) -> str:
    """What a command is, for arming faults: a script's name ('start', 'ack') or a command's."""
    name = str(command[0]).upper() if command else ""
    if name in ("FCALL", "FCALL_RO", "EVALSHA") and len(command) > 1:
        return _script_of_function().get(str(command[1]), name)
    return name


@dataclass
class Line:
    """What the wires of one machine share: one request at a time crosses any of them (so
    replies come back in the order the requests left, the same in every run of an example),
    and the log of every request sent, for comparing two runs."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: int = 0
    sent: list[str] = field(default_factory=list)


@dataclass
class Armed:
    fault: Fault
    label: str
    """The call a request must carry to take this fault ('any': the next request)."""


@dataclass
class Wire:
    """One worker's link to Redis, with the faults armed on it."""

    name: str
    armed: list[Armed] = field(default_factory=list)
    killed: bool = False
    frozen: bool = False
    in_flight: int = 0
    """Requests sent and not answered yet (blocking pops not counted)."""
    last_request: float = 0.0
    held: list[asyncio.Future[None]] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)
    """Requests answered (reply delivered to the worker), per call label."""
    log: list[str] = field(default_factory=list)
    """What happened on this wire (faults taken), for the report of a failing example."""
    _thaw: asyncio.Event = field(default_factory=asyncio.Event)
    line: Line | None = None
    """Shared with the machine's other wires (None: this wire alone)."""

    def arm(self, fault: Fault, label: str) -> None:
        self.armed.append(Armed(fault, label))

    def freeze(self) -> None:
        self.frozen = True
        self._thaw.clear()

    def thaw(self) -> None:
        self.frozen = False
        self._thaw.set()

    def release_held(self) -> int:
        held, self.held = self.held, []
        for gate in held:
            if not gate.done():
                gate.set_result(None)
        return len(held)

    def kill(self) -> None:
        self.killed = True
        self.armed.clear()
        self.release_held()
        self.thaw()

    def calm(self) -> None:
        """No more faults: disarm, release what is held, thaw."""
        self.armed.clear()
        self.release_held()
        self.thaw()

    @property
    def quiet(self) -> bool:
        return self.in_flight == 0 or self.frozen or self.killed

    def _take(self, labels: list[str]) -> Fault | None:
        for i, armed in enumerate(self.armed):
            if armed.label == "any" or armed.label in labels:
                del self.armed[i]
                return armed.fault
        return None

    async def _unfrozen(self) -> None:
        while self.frozen and not self.killed:
            await self._thaw.wait()
        if self.killed:
            raise Killed(f"worker {self.name} was killed")

    async def carry(
        self,
        labels: list[str],
        send: Callable[[], Awaitable[Any]],
        blocking: bool = False,
        about: Sequence[str] = (),
    ) -> Any:
        """Send one request (``send``) across the wire, with whatever fault is armed for it
        (``about``: the task ids it names, for the line's log)."""
        await self._unfrozen()
        fault = None if blocking else self._take(labels)
        if fault is not None:
            self.log.append(f"{fault.value}: {','.join(labels)}")
        if fault is Fault.DROP_REQUEST:
            raise Injected(f"fault: request {labels} dropped")
        if fault is Fault.HOLD:
            gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.held.append(gate)
            await gate
            await self._unfrozen()
        if not blocking:
            self.in_flight += 1
            self.last_request = asyncio.get_running_loop().time()
        try:
            if self.line is None:
                reply = await send()
                if fault is Fault.DUPLICATE:
                    reply = await send()
            else:
                async with self.line.lock:
                    self.line.in_flight += 1
                    self.line.sent.append(f"{self.name} {','.join(labels)} {' '.join(about)}".rstrip())
                    try:
                        reply = await send()
                        if fault is Fault.DUPLICATE:
                            reply = await send()
                    finally:
                        self.line.in_flight -= 1
        finally:
            if not blocking:
                self.in_flight -= 1
        if self.killed:
            raise Killed(f"worker {self.name} was killed (reply dropped)")
        if fault is Fault.DROP_REPLY:
            raise Injected(f"fault: reply to {labels} dropped")
        await self._unfrozen()  # a stalled process reads its replies when it wakes
        for label in labels:
            self.answered[label] = self.answered.get(label, 0) + 1
        return reply


def task_ids(args: Sequence[Any]) -> list[str]:
    """The harness's task ids ('t1', 't2'...) a request names (worker ids and tokens differ
    from run to run; these do not)."""
    return [a for a in args if isinstance(a, str) and a[:1] == "t" and a[1:].isdigit()]


class SilentPubSub:
    """Wake-up hints never arrive (the workers poll): on a line, every message would come at a
    real time, not at a point of the request sequence."""

    async def subscribe(self, *channels: Any) -> None:
        return None

    async def psubscribe(self, *patterns: Any) -> None:
        return None

    async def get_message(self, timeout: float = 0.0) -> None:  # noqa: ASYNC109 - redis-py's signature
        await asyncio.sleep(timeout)

    async def aclose(self) -> None:
        return None


class FaultyPipeline:
    """A non-transactional pipeline whose ``execute`` crosses the wire as one request (a real
    pipeline is built for each send: a duplicated request sends every call again)."""

    def __init__(self, real: Any, wire: Wire) -> None:
        self._real = real
        self._wire = wire
        self._calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **options: Any) -> FaultyPipeline:
        self._calls.append((args, options))
        return self

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        calls = self._calls
        labels = [label_of(args) for args, _ in calls]
        blocking = labels[:1] == ["BLMOVE"]  # an inbox loop's take: BLMOVE, then take.lua
        on_line = self._wire.line is not None
        if blocking:
            (blmove, options), rest = calls[0], calls[1:]
            if on_line:  # one request at a time on the line: LMOVE, then a wait if it found none
                calls = [(("LMOVE", *blmove[1:-1]), options), *rest]
            else:
                calls = [((*blmove[:-1], BLPOP_TIMEOUT_S), options), *rest]

        async def send() -> list[Any]:
            pipe = self._real.pipeline(transaction=False)
            for args, options in calls:
                pipe.execute_command(*args, **options)
            return list(await pipe.execute(raise_on_error=raise_on_error))

        about = [a for args, _ in calls for a in task_ids(args)]
        try:
            reply: list[Any] = await self._wire.carry(labels, send, blocking and not on_line, about)
        finally:
            self._calls = []
        if blocking and on_line and reply[0] is None:
            await asyncio.sleep(BLPOP_TIMEOUT_S)  # (virtual time)
        return reply


class FaultyRedis:
    """The asyncio client a faulted worker is given (see the module docstring)."""

    connection_pool = None  # no direct path in engine.backend: every request crosses the wire

    def __init__(self, real: Any, wire: Wire) -> None:
        self._real = real
        self.wire = wire
        self.response_callbacks = real.response_callbacks

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        label = label_of(args)
        if label == "BLPOP" and self.wire.line is not None:
            # one request at a time on the line: a blocking pop would hold it, so it is an
            # LPOP and, on an empty inbox, a wait of the pop's timeout (virtual time)
            key = args[1]
            popped = await self.wire.carry([label], lambda: self._real.execute_command("LPOP", key))
            if popped is None:
                await asyncio.sleep(BLPOP_TIMEOUT_S)
                return None
            return [key, popped]
        blocking = label == "BLPOP"
        if blocking:
            args = (*args[:-1], BLPOP_TIMEOUT_S)
        return await self.wire.carry(
            [label], lambda: self._real.execute_command(*args, **options), blocking, task_ids(args)
        )

    def pipeline(self, transaction: bool = False) -> FaultyPipeline:
        assert not transaction, "the engine sends non-transactional pipelines only"
        return FaultyPipeline(self._real, self.wire)

    def pubsub(self, **options: Any) -> Any:
        if self.wire.line is not None:
            return SilentPubSub()  # its messages would arrive at times no run repeats
        return self._real.pubsub(**options)  # wake-up hints only: they change no state

    async def script_load(self, source: str) -> Any:
        return await self.execute_command("SCRIPT", "LOAD", source)

    async def aclose(self) -> None:
        await self._real.aclose()
