"""What goes in and out of the worker's core (``engine.worker.core``): typed requests (the
calls to send, as data), effects (handlers to run or stop, refusals to report), the inputs it
is fed, and the enums its decisions are made on."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engine.worker.protocol import Job


class Outcome(enum.StrEnum):
    """How one attempt of a task ended, as the worker records it."""

    COMPLETED = "completed"
    RETRY = "retry"
    DEAD = "dead"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    STALE = "stale"
    """Lease lost or shutdown: someone else owns the outcome now; nothing is recorded."""
    RATE_LIMITED = "rate_limited"
    """The handler raised ``RateLimited``: back to pending uncharged, the queue's bucket paused."""


class FailMode(enum.StrEnum):
    """What ``fail`` does with a failed attempt (the script's ``mode`` argument)."""

    RETRY = "retry"
    PERMANENT = "permanent"
    CANCEL = "cancel"


class FencedCall(enum.StrEnum):
    """A call about a task that a script refused because its delivery token was no longer the
    task's current one (see ``protocol.Job.token``)."""

    START = "start"
    ACK = "ack"
    FAIL = "fail"
    EXTEND = "extend"
    RELEASE = "release"
    PROGRESS = "progress"


class StopReason(enum.Enum):
    LEASE_LOST = enum.auto()
    """The delivery is over: stop the handler; its outcome is not recorded."""
    CANCEL_REQUESTED = enum.auto()
    """An operator cancelled the running task: stop it if it can be stopped; it ends cancelled."""


class FailureKind(enum.Enum):
    UNAVAILABLE = enum.auto()
    """Redis did not answer (connection, timeout, failover): nothing is known to have run."""
    CALL_FAILED = enum.auto()
    """A call raised (e.g. a script error on a corrupt hash); the batch's other calls did run."""


class ExchangeKind(enum.Enum):
    ROUND = enum.auto()  # outcomes + starts + the first dequeue, or a later queue's dequeue
    HANDOFF_START = enum.auto()
    HANDOFF_TAKE = enum.auto()  # the inbox loop's BLMOVE and the take that starts what it moved
    HEARTBEAT = enum.auto()
    PROGRESS = enum.auto()
    RELEASE = enum.auto()


# ---------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Dequeue:
    rid: int
    queue: str
    max_tasks: int
    lease_ms: int
    start_now: int
    handoff_ms: int
    request_id: str
    held: int = 0
    """Slots held for a hand-off by this queue's inbox loop (a ``Take`` in flight)."""
    maintain: bool = True
    """Run the queue's maintenance scans too (promotion, lease recovery): on a timer, not on
    every call (``WorkerCore.on_maintenance_due``)."""
    received: tuple[str, ...] = ()
    """(id, token, ...) of the hand-offs the last take reply brought: those of a take in flight
    that are not among them fill held slots already (``dequeue.lua``)."""
    quiet: bool = False
    """An idle poll: nothing runs, nothing was reported in its round. ``dequeue.lua`` then leaves
    an unchanged hand-off registration with time to run as it is, rather than write it again."""


@dataclass(frozen=True, slots=True)
class Take:
    """Wait for a hand-off (``wait_s`` > 0, in a slot held for it) and start it in the same
    round trip; ``confirmed``: (id, token, ...) of the last take reply received (``take.lua``)."""

    rid: int
    queue: str
    confirmed: tuple[str, ...]
    wait_s: float
    room: int
    """Slots held for it: ``take.lua`` moves more records from the inbox while there is room."""


@dataclass(frozen=True, slots=True)
class Start:
    rid: int
    queue: str
    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    rid: int
    queue: str
    done: tuple[tuple[str, str, str], ...]
    """(task id, delivery token, result JSON)."""


@dataclass(frozen=True, slots=True)
class Fail:
    rid: int
    queue: str
    task_id: str
    token: str
    error: str
    traceback: str
    delay_s: float
    mode: FailMode


@dataclass(frozen=True, slots=True)
class Defer:
    """A task of a type this worker has no handler for: back uncharged (see ``protocol.defer_call``)."""

    rid: int
    queue: str
    task_id: str
    token: str
    delay_s: float
    limit_s: float
    note: str
    error: str


@dataclass(frozen=True, slots=True)
class Throttle:
    """A handler raised ``RateLimited``: the task back uncharged, the queue's bucket paused for
    ``pause_s`` (see ``protocol.throttle_call``)."""

    rid: int
    queue: str
    task_id: str
    token: str
    pause_s: float
    note: str


@dataclass(frozen=True, slots=True)
class Progress:
    rid: int
    queue: str
    task_id: str
    token: str
    percent: float
    message: str


@dataclass(frozen=True, slots=True)
class Extend:
    rid: int
    queue: str
    held: tuple[tuple[str, str], ...]
    lease_ms: int


@dataclass(frozen=True, slots=True)
class Release:
    rid: int
    queue: str
    held: tuple[tuple[str, str], ...]
    note: str


Request = Dequeue | Take | Start | Ack | Fail | Defer | Throttle | Progress | Extend | Release


@dataclass(frozen=True, slots=True)
class Exchange:
    """Requests sent in one round trip; the replies come back keyed by ``Request.rid``."""

    xid: int
    kind: ExchangeKind
    requests: tuple[Request, ...]


# ---------------------------------------------------------------------------------- effects


# RunHandler and HandlerDone are made once per task (the hot path): not frozen, whose __init__
# goes through object.__setattr__ per field; nothing changes them after they are made.
@dataclass(slots=True)
class RunHandler:
    job: Job
    """Started: Redis charged ``job.attempt``."""


@dataclass(frozen=True, slots=True)
class StopHandler:
    task_id: str
    token: str
    reason: StopReason


@dataclass(frozen=True, slots=True)
class Fenced:
    queue: str
    call: FencedCall
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReleaseDependents:
    """Finished tasks with dependents (and, with ``all_queues``, a dead or cancelled one whose
    dependents the outboxes hold): flush the dependency outboxes now."""

    notified: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Throttled:
    """A queue's rate limit held back its pending tasks: no dequeue from it until the driver
    reports the next token due (``WorkerCore.on_token_due``) after ``wait_ms``. With
    ``batch``, no batch of the queue is ready yet: ``wait_ms`` is when the oldest is due, and
    the queue is still asked sooner when tasks arrive (a batch may fill meanwhile)."""

    queue: str
    wait_ms: int
    batch: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stopping, past the grace period, and Redis still unreachable: stop trying."""

    unsent: int


Effect = RunHandler | StopHandler | Fenced | ReleaseDependents | Throttled | GiveUp


# ---------------------------------------------------------------------------------- inputs


@dataclass(slots=True)
class HandlerDone:
    """How a handler ended, as the driver saw it (before the core's adjustments)."""

    job: Job
    outcome: Outcome
    result_json: str = ""
    error: str = ""
    traceback: str = ""
    delay_s: float = 0.0
    mode: FailMode = FailMode.RETRY
