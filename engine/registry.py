"""Task type -> handler mapping ("mux"), handler defaults, and the middleware chain."""

from __future__ import annotations

import importlib
import inspect as pyinspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from engine.errors import AppImportError
from engine.retry import DEFAULT_POLICY, RetryPolicy
from engine.task import DEFAULT_MAX_RETRY, DEFAULT_PRIORITY, DEFAULT_QUEUE, DEFAULT_TIMEOUT_S, Task

Handler = Callable[..., Any]


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


class Middleware(Protocol):
    """Hooks around every attempt. Either method may be sync or async; both are optional at
    runtime (missing ones are skipped). ``after`` gets the outcome: ``completed``, ``retry``,
    ``dead``, ``timeout`` or ``cancelled`` and the exception, if any."""

    def before(self, ctx: Any) -> Awaitable[None] | None: ...

    def after(self, ctx: Any, outcome: str, error: BaseException | None) -> Awaitable[None] | None: ...


@dataclass(frozen=True, slots=True)
class CronDef:
    name: str
    expression: str
    task_type: str
    payload: Any = None
    timezone: str = "UTC"
    queue: str | None = None


@dataclass
class Registry:
    """``registry = Registry()``; ``@registry.task("order:payment", queue="payment", max_retry=5)``."""

    definitions: dict[str, TaskDef] = field(default_factory=dict)
    middleware: list[Any] = field(default_factory=list)
    crons: dict[str, CronDef] = field(default_factory=dict)

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
    ) -> Callable[[Handler], Handler]:
        """Register ``fn(ctx, payload)``; ``payload`` (a pydantic model) validates input, and a
        payload that fails validation goes straight to dead with the validation error."""
        # validate the defaults once, at import time, with the same rules as enqueue
        Task(type=task_type, queue=queue, priority=priority, max_retry=max_retry, timeout=timeout)

        def register(fn: Handler) -> Handler:
            if task_type in self.definitions:
                raise ValueError(f"task type {task_type!r} is registered twice")
            self.definitions[task_type] = TaskDef(
                task_type,
                fn,
                pyinspect.iscoroutinefunction(fn),
                queue,
                priority,
                max_retry,
                timeout,
                retry,
                payload,
            )
            return fn

        return register

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
    ) -> None:
        """Fire ``task_type`` on a 5-field cron schedule (see ``engine.scheduler``)."""
        from engine.scheduler import validate_cron

        validate_cron(expression, timezone)
        self.crons[name] = CronDef(name, expression, task_type, payload, timezone, queue)

    def get(self, task_type: str) -> TaskDef | None:
        return self.definitions.get(task_type)

    @property
    def types(self) -> set[str]:
        return set(self.definitions)

    @property
    def queues(self) -> list[str]:
        return sorted({d.queue for d in self.definitions.values()})

    def make_task(self, task_type: str, payload: Any = None, **overrides: Any) -> Task:
        """A ``Task`` with this type's registered defaults (queue, priority, retries, timeout)."""
        d = self.definitions.get(task_type)
        defaults: dict[str, Any] = {}
        if d is not None:
            defaults = {
                "queue": d.queue,
                "priority": d.priority,
                "max_retry": d.max_retry,
                "timeout": d.timeout,
            }
        from engine.client import build_task

        return build_task(task_type, payload, **{**defaults, **overrides})


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
