"""A worker's options as its caller gives them (``WorkerOptions``, never changed by the worker)
and the values the worker runs with (``Effective``, derived once, frozen)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from engine import defaults
from engine.errors import InvalidConfig
from engine.worker import runners

HANDOFF_MS = 2000
"""How long a hand-off registration lasts unless renewed (an idle worker renews it with each
poll): a worker that died while waiting is handed new tasks for at most this long, and those
wait for their lease to run out (they return uncharged)."""
REGISTRY_REFRESH_S = 2.0  # how often the worker's registry entry (busy slots, tasks) is refreshed
STOP_FLUSH_S = 10.0  # after the grace period, how long a stopping worker keeps trying to record outcomes
MIN_HEARTBEAT_S = 0.2


@dataclass
class WorkerOptions:
    queues: list[str]
    concurrency: int = defaults.CONCURRENCY
    lease_s: float = defaults.LEASE_S
    """Lease length; a dead worker's tasks return to pending this long after its last heartbeat."""
    grace_s: float = defaults.GRACE_S
    """On SIGTERM/SIGINT, how long running tasks may finish before they are handed back."""
    weights: dict[str, int] | None = None
    """None: strict priority in the order of ``queues``. Otherwise the fetch order is drawn by
    weight each round, so lower-weight queues are never starved."""
    prefetch: int | None = None
    """Tasks leased beyond free slots, reserved (uncharged) until a slot frees. Default (None):
    0. A reserved task runs only once its start mark's reply is back: the round trip a dequeue
    for the free slot takes too, so prefetching hides no latency; it costs Valkey two commands
    per task (``start.lua``) and holds tasks another worker could run."""
    poll_interval_s: float = defaults.POLL_INTERVAL_S
    """Idle poll when no event woke the worker; also bounds how late a delayed task starts."""
    heartbeat_s: float | None = None
    """Default: a third of the lease."""
    maintenance_s: float = defaults.MAINTENANCE_S
    event_loop: str = defaults.EVENT_LOOP
    """``run_forever``'s event loop: 'uvloop', 'asyncio', or 'auto' (uvloop when installed)."""
    handoff: bool = True
    """When idle, register so that enqueue hands new tasks straight to this worker (one hop
    from enqueue to start instead of a wake-up and a dequeue round trip)."""
    pool: runners.Pool = defaults.POOL
    """Where sync handlers run: 'thread' (a handler past its timeout keeps its slot until it
    returns) or 'process' (a child process per slot, killed at the task's timeout)."""
    unknown_type_delay_s: float = defaults.UNKNOWN_TYPE_DELAY_S
    """A task of a type this worker has no handler for goes back uncharged, due this much later."""
    unknown_type_timeout_s: float = defaults.UNKNOWN_TYPE_TIMEOUT_S
    """...and goes dead once no worker with a handler took it for this long (0: at once)."""
    burst: bool = False
    """Stop (exit 0) once the served queues are drained: nothing pending, running, due to be
    retried or scheduled now, and no dependency release outstanding (a paused queue's waiting
    tasks do not count; tasks scheduled for later are left for another worker)."""


@dataclass(frozen=True, slots=True)
class Effective:
    """What a worker runs with, derived from its ``WorkerOptions`` (defaults resolved). State
    that changes while it runs (hand-off turned off by an ACL, the grace period cut by a second
    signal) lives in the worker, not here and not in the caller's options."""

    queues: tuple[str, ...]
    concurrency: int
    prefetch: int
    lease_s: float
    grace_s: float
    weights: Mapping[str, int] | None
    poll_interval_s: float
    heartbeat_s: float
    maintenance_s: float
    event_loop: str
    handoff: bool
    pool: runners.Pool
    unknown_type_delay_s: float
    unknown_type_timeout_s: float
    burst: bool

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    @classmethod
    def of(cls, options: WorkerOptions) -> Effective:
        check(options)
        return cls(
            queues=tuple(options.queues),
            concurrency=options.concurrency,
            prefetch=0 if options.prefetch is None else options.prefetch,
            lease_s=options.lease_s,
            grace_s=options.grace_s,
            weights=dict(options.weights) if options.weights else None,
            poll_interval_s=options.poll_interval_s,
            heartbeat_s=options.heartbeat_s or max(MIN_HEARTBEAT_S, options.lease_s / 3),
            maintenance_s=options.maintenance_s,
            event_loop=options.event_loop,
            handoff=options.handoff,
            pool=options.pool,
            unknown_type_delay_s=options.unknown_type_delay_s,
            unknown_type_timeout_s=options.unknown_type_timeout_s,
            burst=options.burst,
        )


def check(options: WorkerOptions) -> None:
    if options.pool not in ("thread", "process"):
        raise InvalidConfig(f"pool must be 'thread' or 'process', got {options.pool!r}")
    for name in ("unknown_type_delay_s", "unknown_type_timeout_s"):
        value = getattr(options, name)
        if not 0 <= value <= 366 * 86400:  # NaN fails too
            raise InvalidConfig(f"{name} must be 0..31622400 seconds, got {value!r}")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a worker runs on. uvloop (libuv, in C) roughly halves the loop's own cost
    per Redis round trip, which is most of a no-op task's time; None means asyncio's default."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise InvalidConfig(f"event loop must be 'auto', 'uvloop' or 'asyncio', got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop  # optional dependency
    except ImportError:
        if choice == "uvloop":
            raise InvalidConfig(
                "event loop 'uvloop' asked for but uvloop is not installed", fix="pip install uvloop"
            ) from None
        return None
    return uvloop.new_event_loop
