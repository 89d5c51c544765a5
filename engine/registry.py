"""Task type -> handler mapping ("mux"), handler defaults, and the middleware chain."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect as pyinspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from engine.batching import Batch, check_handler
from engine.batching import validated as validated_batch
from engine.cron import CronDef, validate_cron, validate_name
from engine.declarations import Declaration
from engine.errors import AppImportError, InvalidBatch, InvalidTask
from engine.flow import RateLimit, parse_limit, validated_group_limit, validated_weight
from engine.handles import TaskHandle
from engine.keys import validate_queue_name
from engine.lifecycle import LifecycleHook
from engine.ops import build_task
from engine.retry import DEFAULT_POLICY, RetryPolicy
from engine.task import DEFAULT_MAX_RETRY, DEFAULT_PRIORITY, DEFAULT_QUEUE, DEFAULT_TIMEOUT_S, Task

if TYPE_CHECKING:
    from engine.client import AsyncClient, Client
    from engine.ops import EnqueueHook

Handler = Callable[..., Any]
M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskDef:
    task_type: str
    handler: Handler
    is_async: bool
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    max_retry: int = DEFAULT_MAX_RETRY
    timeout: float = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = DEFAULT_POLICY
    payload_model: type[BaseModel] | None = None
    unique_ttl: float | None = None
    keep_result: float | None = None
    expires: float | None = None
    batch: Batch | None = None
    """Its tasks go to the handler in batches (``engine.batching``)."""

    @property
    def declaration(self) -> Declaration:
        model = self.payload_model
        return Declaration(
            self.task_type,
            self.queue,
            self.priority,
            self.max_retry,
            self.timeout,
            self.unique_ttl,
            repr(self.retry),
            f"{model.__module__}.{model.__qualname__}" if model is not None else "",
            self.keep_result,
            self.expires,
        )


class Middleware(Protocol):
    """Hooks around every attempt. Either method may be sync or async; both are optional at
    runtime (missing ones are skipped). ``after`` gets the outcome: ``completed``, ``retry``,
    ``dead``, ``timeout`` or ``cancelled`` and the exception, if any."""

    def before(self, ctx: Any) -> Awaitable[None] | None: ...

    def after(self, ctx: Any, outcome: str, error: BaseException | None) -> Awaitable[None] | None: ...


@dataclass
class Registry:
    """``registry = Registry()``; ``@registry.task("order:payment", queue="payment", max_retry=5)``.

    What a type declares (queue, priority, retries, timeout, uniqueness) applies to every
    enqueue of it: through the handle the decorator returns (``charge.enqueue(Payment(...))``),
    through ``Client(registry=registry)``, and through a plain client with no registry once a
    worker of this registry has started (workers publish their declarations to Redis)."""

    definitions: dict[str, TaskDef] = field(default_factory=dict)
    middleware: list[Any] = field(default_factory=list)
    crons: dict[str, CronDef] = field(default_factory=dict)
    client: Client | None = field(default=None, repr=False, compare=False)
    """The client typed handles enqueue through (default: a ``Client(registry=self)`` made on
    first use, from ``REDIS_URL`` or the embedded server)."""
    enqueue_hooks: list[EnqueueHook] = field(default_factory=list)
    """Run on every task a client with this registry enqueues (``before_enqueue``)."""
    async_clients: dict[int, tuple[asyncio.AbstractEventLoop, AsyncClient]] = field(
        default_factory=dict, repr=False, compare=False
    )
    """Per event loop, the ``AsyncClient`` handles' ``enqueue_async`` uses."""
    startup_hooks: list[LifecycleHook] = field(default_factory=list)
    shutdown_hooks: list[LifecycleHook] = field(default_factory=list)
    rate_limits: dict[tuple[str, str | None], RateLimit] = field(default_factory=dict)
    """Per queue (and task type, or None: the whole queue), the rate limit its workers write at
    start (``rate_limit``)."""
    group_limits: dict[tuple[str, str], int] = field(default_factory=dict)
    """(queue, group) -> K, written by its workers at start unless set (``group_limit``)."""

    fair_queues: dict[str, dict[str, int]] = field(default_factory=dict)
    """Queue -> group weights: queues fair between their groups, written by workers at start
    unless an operator set (or turned off and back on) the queue's fairness (``fair``)."""

    def fair(self, queue: str, weights: dict[str, int] | None = None) -> None:
        """Round-robin between the groups of ``queue`` (``Task.group``; no group: one group),
        each group's share of a round its weight (default 1; ``*``: the default)."""
        try:
            validate_queue_name(queue)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        self.fair_queues[queue] = {g: validated_weight(g, w) for g, w in (weights or {}).items()}

    def group_limit(self, queue: str, limit: int, *, group: str = "*") -> None:
        """At most ``limit`` tasks of one concurrency group (``Task.group``) of ``queue`` run at
        once, fleet-wide; ``group`` names one group, ``*`` (default) any group. Workers write it
        at start where no limit is set for that group (an operator's stays)."""
        try:
            validate_queue_name(queue)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        self._not_batched(queue, "a concurrency group limit")
        self.group_limits[(queue, group)] = validated_group_limit(group, limit)

    @property
    def batches(self) -> dict[tuple[str, str], Batch]:
        """(queue, task type) -> its batch, for each batch type (written by workers at start)."""
        return {(d.queue, t): d.batch for t, d in self.definitions.items() if d.batch is not None}

    def _not_batched(self, queue: str, what: str) -> None:
        # a batched queue hands out whole batches: its dequeue applies no rate or group limit
        batched = sorted(t for (q, t) in self.batches if q == queue)
        if batched:
            raise InvalidBatch(
                f"queue {queue!r} holds batch type {batched[0]!r}: {what} would not hold there",
                fix="Give the batch type a queue of its own (queue=...) or drop the limit",
            )

    def rate_limit(
        self, queue: str, limit: str, *, burst: int = 1, task_type: str | None = None
    ) -> RateLimit:
        """Declare ``queue``'s fleet-wide rate limit, ``"50/s"`` (N per ms/s/m/h, e.g. ``5/10s``)
        with up to ``burst`` tasks at once; with ``task_type``, that type's own limit in the
        queue (its other types flow past it). Workers of this app write it at start, unless an
        operator set one (``rediq queue limit``), which stays until cleared. Raises
        ``InvalidLimit`` at import for a limit that cannot be enforced."""
        try:
            validate_queue_name(queue)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        parsed = parse_limit(limit, burst)
        self._not_batched(queue, "a rate limit")
        self.rate_limits[(queue, task_type)] = parsed
        return parsed

    def task(
        self,
        task_type: str,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        max_retry: int = DEFAULT_MAX_RETRY,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_POLICY,
        payload: type[BaseModel] | None = None,
        unique_ttl: float | None = None,
        keep_result: float | None = None,
        expires: float | None = None,
        batch: Batch | None = None,
    ) -> Callable[[Callable[[Any, M], R]], TaskHandle[M, R]]:
        """Register ``fn(ctx, payload)`` and return a typed handle to enqueue it
        (``fn.enqueue(payload)``; calling the handle calls ``fn``). ``payload`` (a pydantic
        model) validates input, and a payload that fails validation goes straight to dead with
        the validation error. ``priority`` is 0..100 and 0 runs first. ``unique_ttl``: while a
        task of this type with the same payload is alive (at most that many seconds),
        enqueueing it again returns the first one's id. ``keep_result``: seconds a completed
        task of this type (its result and hash) is kept, 0 to store no result (default: the
        retention). ``expires``: seconds after enqueue by which a task of this type must start,
        else it ends ``expired`` without running (default: no deadline). ``batch``: the handler
        is ``fn(ctx, items: list[BatchItem])`` and gets up to ``max_size`` tasks at once
        (``engine.batching``; docs/howto/batching.md)."""
        if batch is not None:
            batch = validated_batch(batch, task_type)
            limited = [q for (q, _) in (*self.rate_limits, *self.group_limits) if q == queue]
            if limited:
                raise InvalidBatch(
                    f"batch type {task_type!r}: queue {queue!r} has a rate or group limit, which "
                    "would not hold for its batches",
                    fix="Give the batch type a queue of its own (queue=...) or drop the limit",
                )
        definition = TaskDef(
            task_type,
            _no_handler,
            False,
            queue,
            priority,
            max_retry,
            timeout,
            retry,
            payload,
            unique_ttl,
            keep_result,
            expires,
            batch,
        )
        # validate the defaults once, at import time, with the same rules as enqueue
        definition.declaration.validate()

        def register(fn: Callable[[Any, M], R]) -> TaskHandle[M, R]:
            if task_type in self.definitions:
                raise ValueError(f"task type {task_type!r} is registered twice")
            if batch is not None:
                check_handler(task_type, fn)
            self.definitions[task_type] = dataclasses.replace(
                definition, handler=fn, is_async=pyinspect.iscoroutinefunction(fn)
            )
            return TaskHandle(self, task_type, fn)

        return register

    def before_enqueue(self, hook: EnqueueHook) -> EnqueueHook:
        """``@registry.before_enqueue``: ``hook(task)`` runs on every task that a client with
        this registry enqueues (typed handles included), after the type's declaration is
        applied. Return a changed task (``task.model_copy(update={"metadata": ...})``, e.g.
        tracing headers), None to keep it, or raise to refuse the enqueue."""
        self.enqueue_hooks.append(hook)
        return hook

    def on_startup(self, hook: LifecycleHook) -> LifecycleHook:
        """``@registry.on_startup``: ``hook(state)`` (sync or async) runs once per worker process
        before it takes any task (and once in each child with ``--pool process``); what it sets
        on ``state`` handlers read as ``ctx.state``. If it raises, the worker exits non-zero
        (E016) without taking tasks."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: LifecycleHook) -> LifecycleHook:
        """``@registry.on_shutdown``: ``hook(state)`` runs once per worker process after the
        drain (last registered first); an error is logged and the other hooks still run."""
        self.shutdown_hooks.append(hook)
        return hook

    def declarations(self) -> dict[str, Declaration]:
        """Every registered type's declaration, by type."""
        return {t: d.declaration for t, d in self.definitions.items()}

    def add_middleware(self, middleware: Any) -> None:
        self.middleware.append(middleware)

    def cron(
        self,
        name: str,
        expression: str,
        task_type: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        queue: str | None = None,
        run_at_startup: bool = False,
    ) -> None:
        """Fire ``task_type`` on a cron schedule: 5 fields, or 6 with seconds last
        (``* * * * * */10``: every 10 s); ``run_at_startup``: also once when the fleet starts
        (see ``engine.cron``)."""
        validate_name(name)
        validate_cron(expression, timezone)
        self.crons[name] = CronDef(name, expression, task_type, payload, timezone, queue, run_at_startup)

    def get(self, task_type: str) -> TaskDef | None:
        return self.definitions.get(task_type)

    @property
    def types(self) -> set[str]:
        return set(self.definitions)

    @property
    def queues(self) -> list[str]:
        return sorted({d.queue for d in self.definitions.values()})

    def make_task(self, task_type: str, payload: Any = None, **overrides: Any) -> Task:
        """A ``Task`` with this type's declared defaults (queue, priority, retries, timeout,
        uniqueness); ``overrides`` win."""
        task = build_task(task_type, payload, **overrides)
        d = self.definitions.get(task_type)
        return d.declaration.apply(task) if d is not None else task


def _no_handler(ctx: Any, payload: Any) -> Any:  # pragma: no cover - replaced at registration
    raise NotImplementedError


def load_app(path: str) -> Registry:
    """Import ``package.module:attribute`` and return the ``Registry`` there (E008 otherwise)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise AppImportError(f"--app {path!r} is not of the form 'package.module:registry'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppImportError(f"cannot import module {module_name!r}: {exc}") from None
    registry = getattr(module, attr, None)
    if not isinstance(registry, Registry):
        raise AppImportError(f"{path!r} is not an engine.registry.Registry (found {type(registry).__name__})")
    return registry
