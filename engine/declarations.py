"""Task declarations: what a task type's handler declared, applied to every enqueue of the type.

``@registry.task("order:payment", queue="payment", max_retry=5)`` declares where the type runs
and its defaults. A producer gets declarations from its own registry (``Client(registry=...)``
or a typed handle) or, with no registry, from Redis: every worker publishes its registry's
declarations at start (``publish``) and sets a new version token when one changed; a producer
caches them and re-reads the hash only when the version moved (checked at most every
``REFRESH_S``, or ``MISS_REFRESH_S`` after meeting a type it does not know).

Fields a task sets explicitly (pydantic's ``model_fields_set``) win over the declaration.
A type declared nowhere goes to the given or default queue with a one-line warning (once per
type per process), or is refused in strict mode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from engine.backend import Batch, Call, Op, cmd
from engine.errors import ConnectionFailed, InvalidTask, validation_message
from engine.keys import Keyspace
from engine.task import DEFAULT_MAX_RETRY, DEFAULT_PRIORITY, DEFAULT_QUEUE, DEFAULT_TIMEOUT_S, Task

log = logging.getLogger("rediq.client")

REFRESH_S = 5.0
"""How often a producer checks whether published declarations changed (one GET)."""
MISS_REFRESH_S = 1.0
"""How soon a producer re-checks after meeting a type it has no declaration for (a worker that
declares it may just have started)."""

_APPLIED = ("queue", "priority", "max_retry", "timeout")


@dataclass(frozen=True, slots=True)
class Declaration:
    """One task type's declared queue and defaults, as published to Redis (data only)."""

    task_type: str
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    """0..100, 0 runs first."""
    max_retry: int = DEFAULT_MAX_RETRY
    timeout: float = DEFAULT_TIMEOUT_S
    unique_ttl: float | None = None
    """When set, a task of this type is unique by payload for up to this many seconds: while
    one is alive, enqueueing the same payload again returns the first one's id."""
    retry: str = ""
    """The retry policy, as text (the worker that runs the handler applies it)."""
    payload_model: str = ""
    """``module.Class`` of the payload model, for ``rediq task types``."""
    keep_result: float | None = None
    """Seconds a completed task of this type is kept (0: no result stored); None: the retention."""
    expires: float | None = None
    """Seconds after enqueue by which a task of this type must start, else it ends ``expired``."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """A short hash of the declaration: two workers with different digests for one type run
        different versions of the app."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:10]

    @classmethod
    def from_json(cls, text: str) -> Declaration | None:
        """Parse a published declaration; None for anything malformed (written by hand or by a
        buggy publisher): the type then counts as undeclared, never as a crash."""
        try:
            data = json.loads(text)
            decl = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
            decl.validate()
        except (ValueError, TypeError, ValidationError, InvalidTask):
            return None
        return decl

    def validate(self) -> None:
        """Raise ``InvalidTask`` (one line) when a default would be refused at enqueue."""
        try:
            Task(
                type=self.task_type,
                queue=self.queue,
                priority=self.priority,
                max_retry=self.max_retry,
                timeout=self.timeout,
                unique_ttl=86400.0 if self.unique_ttl is None else self.unique_ttl,
                keep_result=self.keep_result,
                expires=self.expires,
            )
        except ValidationError as exc:
            raise InvalidTask(f"task type {self.task_type!r}: {validation_message(exc)}") from None
        if self.unique_ttl is not None and not math.isfinite(self.unique_ttl):
            raise InvalidTask(f"task type {self.task_type!r}: unique_ttl must be finite")

    def apply(self, task: Task) -> Task:
        """``task`` with the declared value of every field it did not set explicitly."""
        explicit = task.model_fields_set
        current = task.__dict__
        update: dict[str, Any] = {}
        for name, value in (
            ("queue", self.queue),
            ("priority", self.priority),
            ("max_retry", self.max_retry),
            ("timeout", self.timeout),
        ):
            if name not in explicit and current[name] != value:
                update[name] = value
        if self.keep_result is not None and "keep_result" not in explicit:
            update["keep_result"] = self.keep_result
        if self.expires is not None and "expires" not in explicit and task.due_in_ms() < self.expires * 1000:
            # a task delayed past the declared lifetime gets no deadline from it (it would
            # only expire unstarted); an explicit ``expires`` is checked against the delay
            update["expires"] = self.expires
        if self.unique_ttl is not None and "unique_key" not in explicit:
            digest = hashlib.sha1(task.payload_json().encode("utf-8", "replace")).hexdigest()[:32]
            update["unique_key"] = f"{task.type}:{digest}"
            if "unique_ttl" not in explicit:
                update["unique_ttl"] = self.unique_ttl
        # not validated again: the values are the declaration's, validated when it was made or read
        return task.model_copy(update=update) if update else task


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_undeclared(task: Task) -> None:
    """One line per type per process: the task went where the caller said, which may be a
    queue no worker serves."""
    with _warned_lock:
        if task.type in _warned:
            return
        _warned.add(task.type)
    log.warning(
        "task type %r is declared nowhere (no registry given, no worker published it): enqueued to "
        "queue %r with default settings. Declare it with @registry.task(%r, queue=...) in the app your "
        "workers run, or pass Client(registry=...)",
        task.type,
        task.queue,
        task.type,
    )


@dataclass
class Declarations:
    """A producer's declarations: its own registry's (``local``) first, then the published ones,
    cached. ``strict`` refuses types declared nowhere."""

    local: Mapping[str, Declaration] = field(default_factory=dict)
    strict: bool = False
    refresh_s: float = REFRESH_S
    miss_refresh_s: float = MISS_REFRESH_S
    published: dict[str, Declaration] = field(default_factory=dict)
    version: str | None = None
    """The version counter last read; None until the first read."""
    checked_at: float = -math.inf
    """``time.monotonic()`` of the last read."""

    def _due(self, types: set[str]) -> bool:
        if self.version is None:
            return True
        age = time.monotonic() - self.checked_at
        if age >= self.refresh_s:
            return True
        return age >= self.miss_refresh_s and any(t not in self.published for t in types)

    def refresh(self, keyspace: Keyspace, force: bool = False) -> Op[None]:
        """Re-read published declarations if the version moved (one GET when it did not). A
        failed read keeps the cache; with no cache at all it raises ``ConnectionFailed`` rather
        than send tasks to a queue their declaration does not name."""
        read_all = Call(command=("HGETALL", keyspace.declarations), best_effort=True)
        calls = [Call(command=("GET", keyspace.declarations_version), best_effort=True)]
        if self.version is None or force:
            calls.append(read_all)
        replies = yield Batch(calls)
        version = "" if replies[0] is None else str(replies[0])  # "": nothing published yet
        if len(replies) > 1:
            raw = replies[1]
        elif version != self.version:
            raw = (yield Batch([read_all]))[0]
        else:
            self.checked_at = time.monotonic()
            return
        if raw is None:  # the read failed
            if self.version is None:
                raise ConnectionFailed("cannot read the published task declarations")
            return  # keep what we have; the next check tries again
        parsed = (Declaration.from_json(text) for text in dict(raw).values())
        self.published = {d.task_type: d for d in parsed if d is not None}
        self.version = version
        self.checked_at = time.monotonic()

    def get(self, task_type: str) -> Declaration | None:
        return self.local.get(task_type) or self.published.get(task_type)

    def needs_refresh(self, task_types: set[str]) -> bool:
        """Whether resolving tasks of these types reads the published declarations first."""
        remote = {t for t in task_types if t not in self.local}
        return bool(remote) and self._due(remote)

    def apply_known(self, task: Task) -> Task:
        """``task`` with its type's declaration as known now (no read: see ``needs_refresh``)."""
        decl = self.get(task.type)
        if decl is None:
            self._undeclared(task)
            return task
        return decl.apply(task)

    def resolve(self, keyspace: Keyspace, tasks: Sequence[Task]) -> Op[list[Task]]:
        """The tasks with their types' declarations applied (see ``Declaration.apply``)."""
        if self.needs_refresh({t.type for t in tasks}):
            yield from self.refresh(keyspace)
        out: list[Task] = []
        found: dict[str, Declaration | None] = {}  # per type, once per call
        for task in tasks:
            if task.type in found:
                decl = found[task.type]
            else:
                decl = found[task.type] = self.get(task.type)
                if decl is None:
                    self._undeclared(task)
            out.append(task if decl is None else decl.apply(task))
        return out

    def _undeclared(self, task: Task) -> None:
        if self.strict:
            raise InvalidTask(
                f"task type {task.type!r} is declared nowhere and this client is strict",
                fix=f"Declare it with @registry.task({task.type!r}, queue=...) in the app a worker runs "
                "(workers publish declarations at start), or pass Client(registry=...)",
            )
        warn_undeclared(task)


def publish(keyspace: Keyspace, worker_id: str, declarations: Sequence[Declaration]) -> Op[int]:
    """Publish a registry's declarations and which types this worker has handlers for; bump
    the version when any declaration changed. Returns how many changed. Idempotent: every
    worker of an app publishes the same declarations, and only the first changes anything."""
    stored, live = yield Batch(
        [cmd("HGETALL", keyspace.declarations), cmd("ZRANGE", keyspace.workers, 0, -1)]
    )
    changed = [d for d in declarations if stored.get(d.task_type) != d.to_json()]
    calls: list[Call] = []
    if changed:
        calls.append(
            cmd("HSET", keyspace.declarations, *[x for d in changed for x in (d.task_type, d.to_json())])
        )
        # after the write: a producer that read the old version re-reads the hash. A random
        # token, not a counter: a counter restarts after a flush and could match a stale cache
        calls.append(cmd("SET", keyspace.declarations_version, os.urandom(8).hex()))
    served = {d.task_type: d.digest for d in declarations}
    calls.append(cmd("HSET", keyspace.declared_by, worker_id, json.dumps(served, sort_keys=True)))
    known = yield cmd("HKEYS", keyspace.declared_by)
    gone = [w for w in known if w not in set(live) and w != worker_id]
    if gone:  # workers that left the registry (they beat no more)
        calls.append(cmd("HDEL", keyspace.declared_by, *gone))
    yield Batch(calls)
    return len(changed)


def forget(keyspace: Keyspace, task_types: Sequence[str]) -> Op[int]:
    """Drop published declarations (of types no app has any more); returns how many went. A
    worker that still has one publishes it again when it starts."""
    removed = int((yield cmd("HDEL", keyspace.declarations, *task_types)))
    if removed:
        yield cmd("SET", keyspace.declarations_version, os.urandom(8).hex())
    return removed


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """One declared type for ``rediq task types``: its declaration and the live workers that
    have a handler for it and serve its queue."""

    declaration: Declaration
    served_by: tuple[str, ...]
    """Live workers with a handler for the type that listen on its queue."""
    handlers_elsewhere: tuple[str, ...]
    """Live workers with a handler for the type that do not listen on its queue."""
    other_versions: tuple[str, ...]
    """Live workers whose declaration of the type differs (another version of the app)."""


def list_types(keyspace: Keyspace) -> Op[list[TypeInfo]]:
    raw, by_worker, live = yield Batch(
        [
            cmd("HGETALL", keyspace.declarations),
            cmd("HGETALL", keyspace.declared_by),
            cmd("ZRANGE", keyspace.workers, 0, -1),
        ]
    )
    live_ids = [w for w in live if w in by_worker]
    queue_lists: list[str | None] = []
    if live_ids:
        queue_lists = yield Batch([cmd("HGET", keyspace.worker(w), "queues") for w in live_ids])
    worker_queues = {w: set((q or "").split(",")) for w, q in zip(live_ids, queue_lists, strict=True) if q}
    out = []
    for text in sorted(raw.values()):
        decl = Declaration.from_json(text)
        if decl is None:
            continue
        served: list[str] = []
        elsewhere: list[str] = []
        versions: list[str] = []
        for worker_id, queues in sorted(worker_queues.items()):
            try:
                handlers = json.loads(by_worker[worker_id])
            except ValueError:
                continue
            if not isinstance(handlers, dict) or decl.task_type not in handlers:
                continue
            if handlers[decl.task_type] != decl.digest:
                versions.append(worker_id)
            (served if decl.queue in queues else elsewhere).append(worker_id)
        out.append(TypeInfo(decl, tuple(served), tuple(elsewhere), tuple(versions)))
    return sorted(out, key=lambda i: i.declaration.task_type)
