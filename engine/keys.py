"""Every Redis key name rediq uses, built in one place.

Keys of one queue share the hash tag ``{<queue>}`` so that every script touching a queue runs
on one Cluster slot. Global registries (the queue set, the worker registry, cron entries) live
outside any queue's slot and are only touched by single-key commands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from engine import defaults

DEFAULT_PREFIX = defaults.PREFIX

PER_ID_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "task": "t:",
        "history": "h:",
        "dependents": "dependents:",
        "deps": "deps:",
        "fingerprint": "fp:",
        "runtimes": "rt:",
        "unique": "unique:",
        "inbox": "inbox:",
        "taken": "taken:",
        "receipt": "receipt:",
        "log": "log:",
        "cgroup": "cg:",
        "type_rate": "rl:",
    }
)
"""The keys of a queue's slot named by one id (task id, fingerprint, type, unique key, worker
id): ``base + suffix + id``. Scripts build them too (a dequeue learns its task ids only inside
the script): ``engine.lua`` generates a Lua helper ``<name>_key(base, id)`` from each entry, so
Python and Lua spell these names once, here."""

SCRIPT_QUEUE_KEYS: Mapping[str, str] = MappingProxyType(
    {"expired": "expired", "expiries": "expiries", "fair": "fair"}
)
"""The queue-wide keys that scripts reach without being passed them in KEYS (a task expires
inside several scripts): ``base + name``; ``engine.lua`` generates ``<name>_key(base)``."""

ARRIVALS = ":arrivals"
"""Suffix of a queue's arrivals channel (``QueueKeys.arrivals``): its events channel + this.
Scripts publish the events that may mean work for a worker there (Lua ``arrivals_channel``)."""

ARRIVAL_EVENTS = ("pending", "resumed")
"""The events published on the arrivals channel rather than the events channel."""

STATS = "stats:"
"""Per-minute counters: ``base + 'stats:' + kind + ':' + minute`` (Lua helper ``stat_key``)."""

# Queue names become part of key names and of a hash tag: braces would break the tag, and
# whitespace / control characters make keys unreadable in redis-cli.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def validate_queue_name(name: str) -> str:
    if not QUEUE_NAME_RE.match(name):
        raise ValueError(f"queue name {name!r} is invalid: use 1-64 letters, digits, '_', '-', '.', ':'")
    return name


def validate_prefix(prefix: str) -> str:
    """A key prefix must not hold a hash tag: with ``{`` or ``}`` in it, Redis Cluster hashes
    every key on the prefix's tag instead of the queue's, and all queues land in one slot."""
    if not prefix or any(c.isspace() or c in "{}" for c in prefix):
        raise ValueError(
            f"key prefix {prefix!r} is invalid: use a non-empty prefix without spaces or braces "
            "(braces would put every queue in one Cluster slot)"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue. ``base`` ends with ':' so task keys are ``base + 't:' + id``."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}:"

    # state structures
    @property
    def pending(self) -> str:
        return self.base + "pending"

    @property
    def active(self) -> str:
        return self.base + "active"

    @property
    def scheduled(self) -> str:
        return self.base + "scheduled"

    @property
    def retry(self) -> str:
        return self.base + "retry"

    @property
    def waiting(self) -> str:
        return self.base + "waiting"

    @property
    def dead(self) -> str:
        return self.base + "dead"

    @property
    def completed(self) -> str:
        return self.base + "completed"

    @property
    def cancelled(self) -> str:
        return self.base + "cancelled"

    @property
    def quarantine(self) -> str:
        return self.base + "quarantined"

    @property
    def expired(self) -> str:
        """Tasks not started by their ``expires`` deadline (a final state), scored by when."""
        return self.base + SCRIPT_QUEUE_KEYS["expired"]

    @property
    def expiries(self) -> str:
        """Sorted set of task id -> ``expires`` deadline (ms) of tasks not started yet: the
        expiry sweep (``expire.lua``) reads the due ones."""
        return self.base + SCRIPT_QUEUE_KEYS["expiries"]

    # queue-wide bookkeeping
    @property
    def paused(self) -> str:
        return self.base + "paused"

    @property
    def seq(self) -> str:
        return self.base + "seq"

    @property
    def fair(self) -> str:
        """Hash of a queue's fair scheduling (``engine.flow``, ``fair_tag`` in ``_lib.lua``):
        ``on`` '1' when fair, ``clock`` the virtual clock, ``w:<group>`` weights (``w:*`` the
        default), ``t:<group>`` the last tag given to a group with tasks still pending."""
        return self.base + SCRIPT_QUEUE_KEYS["fair"]

    @property
    def cgroup_limits(self) -> str:
        """Hash of concurrency group -> K, the most tasks of that group holding a lease at once
        (``*``: any group without its own entry); ``dequeue.lua`` checks it (``engine.flow``)."""
        return self.base + "cglimits"

    @property
    def type_limits(self) -> str:
        """Hash of task type -> '1' for each type of the queue with a rate limit of its own
        (its bucket: ``type_rate``); ``dequeue.lua`` checks them when it exists."""
        return self.base + "typelimits"

    @property
    def batches(self) -> str:
        """Hash of task type -> '<max_size>:<max_delay ms>' for each batch type of the queue
        (``engine.batching``); ``dequeue.lua`` hands the queue's tasks out in batches when it
        exists."""
        return self.base + "batches"

    def type_rate(self, task_type: str) -> str:
        """Hash of one task type's rate limit in this queue, fields as ``rate_limit``'s."""
        return self.base + PER_ID_KEYS["type_rate"] + task_type

    def cgroup(self, group: str) -> str:
        """Sorted set of the task ids of one concurrency group holding a lease -> the lease's
        expiry (ms): its live members are counted, so a dead worker's return as leases lapse."""
        return self.base + PER_ID_KEYS["cgroup"] + group

    @property
    def rate_limit(self) -> str:
        """Hash of the queue's rate limit (``engine.flow``): 'rate' tokens per 'period' ms, up to
        'burst' at once, 'src' (code or operator) and the bucket's state, 'tat' (GCRA's
        theoretical arrival time, ms) and 'until' (paused by a handler's ``RateLimited``, ms).
        ``dequeue.lua`` leases no more tasks than it allows."""
        return self.base + "ratelimit"

    def stat(self, kind: str, minute: int) -> str:
        """Per-minute counter (``p`` processed, ``f`` failed, ``e`` enqueued), expiring after a day."""
        return f"{self.base}{STATS}{kind}:{minute}"

    @property
    def dep_outbox(self) -> str:
        """Sorted set of finished task ids whose dependents still need to be told."""
        return self.base + "depoutbox"

    @property
    def events(self) -> str:
        """Pub/sub channel for this queue's state transitions (but arrivals)."""
        return self.base + "events"

    @property
    def arrivals(self) -> str:
        """Pub/sub channel for the transitions that may mean work for a worker (``pending``,
        ``resumed``): what workers subscribe to, so that they do not receive (and parse) the
        events of their own starts and acks."""
        return self.events + ARRIVALS

    @property
    def failures(self) -> str:
        """Hash of error fingerprint -> JSON group summary (dead and retrying tasks)."""
        return self.base + "failures"

    @property
    def idle(self) -> str:
        """Hash of worker id -> 'free slots:deadline ms:lease ms' for workers waiting on this
        queue: enqueue hands a new task straight to one of them (see ``inbox``)."""
        return self.base + "idle"

    def inbox(self, worker_id: str) -> str:
        """List of tasks handed to one waiting worker (leased to it, not yet started)."""
        return self.base + PER_ID_KEYS["inbox"] + worker_id

    def taken(self, worker_id: str) -> str:
        """List of hand-offs one worker moved out of its inbox and started in the same round trip,
        kept until the worker confirms it got them (see ``take.lua``)."""
        return self.base + PER_ID_KEYS["taken"] + worker_id

    def receipt(self, worker_id: str) -> str:
        """JSON [request id, task ids...] of one worker's last dequeue that leased tasks, for one
        lease: a copy of that request sent again gets the same tasks (see ``dequeue.lua``)."""
        return self.base + PER_ID_KEYS["receipt"] + worker_id

    # per task
    def task(self, task_id: str) -> str:
        return self.base + PER_ID_KEYS["task"] + task_id

    def history(self, task_id: str) -> str:
        return self.base + PER_ID_KEYS["history"] + task_id

    def log(self, task_id: str) -> str:
        """List of the log lines a handler wrote for the task (``ctx.log``, ``engine.tasklog``),
        the last 100; it expires and is deleted with the task."""
        return self.base + PER_ID_KEYS["log"] + task_id

    def dependents(self, task_id: str) -> str:
        """Set of ``queue|id`` refs of tasks waiting on ``task_id``."""
        return self.base + PER_ID_KEYS["dependents"] + task_id

    def deps(self, task_id: str) -> str:
        """Set of dependency ids that ``task_id`` still waits for."""
        return self.base + PER_ID_KEYS["deps"] + task_id

    def fingerprint(self, fp: str) -> str:
        """Sorted set of the ids in one error-fingerprint group."""
        return self.base + PER_ID_KEYS["fingerprint"] + fp

    def runtimes(self, task_type: str) -> str:
        """Capped list of recent run times (ms) of one task type, for the backlog forecast."""
        return self.base + PER_ID_KEYS["runtimes"] + task_type

    def unique(self, unique_key: str) -> str:
        return self.base + PER_ID_KEYS["unique"] + unique_key

    def state_key(self, state: str) -> str:
        return self.base + state


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Key names for one application prefix (several apps can share a Redis)."""

    prefix: str = DEFAULT_PREFIX

    def queue(self, name: str) -> QueueKeys:
        return _queue_keys(self.prefix, name)

    @property
    def queues(self) -> str:
        """Set of known queue names (the engine never needs SCAN)."""
        return f"{self.prefix}:queues"

    @property
    def workers(self) -> str:
        """Sorted set worker id -> last heartbeat (ms)."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def worker_stop(self, worker_id: str) -> str:
        """A stop request for one worker (set by an operator, honoured at its next heartbeat)."""
        return f"{self.prefix}:workerstop:{worker_id}"

    @property
    def cron(self) -> str:
        """Hash of cron entry name -> JSON entry."""
        return f"{self.prefix}:cron"

    def cron_fire(self, name: str, fire_ts: int) -> str:
        return f"{self.prefix}:cronfire:{name}:{fire_ts}"

    def cron_startup(self, name: str) -> str:
        """Kept alive by every scheduler that declares ``name`` with ``run_at_startup``: while
        it exists the fleet is running, and a starting worker does not fire the entry again."""
        return f"{self.prefix}:cronup:{name}"

    @property
    def cron_state(self) -> str:
        """Hash of cron entry name -> JSON of last fire (time, task id)."""
        return f"{self.prefix}:cronstate"

    @property
    def audit(self) -> str:
        """Stream of operator actions."""
        return f"{self.prefix}:audit"

    @property
    def declarations(self) -> str:
        """Hash of task type -> JSON declaration (queue, defaults) published by workers at
        start, read by producers that have no registry (``engine.declarations``)."""
        return f"{self.prefix}:types"

    @property
    def declarations_version(self) -> str:
        """A random token set anew after every change of ``declarations``: producers re-read
        the hash only when it moved."""
        return f"{self.prefix}:types:version"

    @property
    def declared_by(self) -> str:
        """Hash of worker id -> JSON {task type: declaration digest} of the handlers it has."""
        return f"{self.prefix}:types:workers"

    @property
    def events_pattern(self) -> str:
        return f"{self.prefix}:{{*}}:events"

    @property
    def arrivals_pattern(self) -> str:
        return self.events_pattern + ARRIVALS


@lru_cache(maxsize=4096)
def _queue_keys(prefix: str, name: str) -> QueueKeys:
    return QueueKeys(prefix, name)
