"""Producer API: ``Client`` (sync) and ``AsyncClient`` with the same surface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypedDict, TypeVar

from engine import admin, ops, results
from engine.backend import AsyncBackend, Call, Op, SyncBackend, use_hiredis_packer
from engine.connection import RedisTarget, parse_url
from engine.declarations import Declarations
from engine.enqueue_templates import EnqueueTemplates
from engine.errors import InvalidTask
from engine.errors import validation_message as validation_message  # moved to errors; kept importable
from engine.ops import EnqueueHook, EnqueueResult, QueueRegistrations, Settings
from engine.ops import build_task as build_task  # moved to ops (cron reaches it without the client)
from engine.task import Task, TaskInfo

if TYPE_CHECKING:
    from engine.registry import Registry

P = ParamSpec("P")
T = TypeVar("T")


def _enqueue_op(
    client: Client | AsyncClient, tasks: Sequence[Task], durable: bool | int
) -> Op[list[EnqueueResult]]:
    op = ops.enqueue_many(client.settings, tasks, client.declarations, **_route_options(client))
    if not durable:
        return op
    if client.target is not None and client.target.mode == "cluster":
        raise InvalidTask(
            "durable enqueue is not supported on Redis Cluster yet",
            fix="Use it with a single primary or Sentinel, or rely on min-replicas-to-write",
        )
    return ops.durable(op, replicas=1 if durable is True else int(durable))


def _enqueue_one_op(client: Client | AsyncClient, task: Task, durable: bool | int) -> Op[EnqueueResult]:
    if durable:  # the WAIT rides with the batch (ops.durable)
        return _first(_enqueue_op(client, [task], durable))
    return ops.enqueue_one(client.settings, task, client.declarations, **_route_options(client))


class _RouteOptions(TypedDict):
    bind: Any
    hooks: Sequence[EnqueueHook]
    registrations: QueueRegistrations | None


def _route_options(client: Client | AsyncClient) -> _RouteOptions:
    """What both enqueue routes take from the client beside its settings and declarations."""
    return {"bind": client, "hooks": client.enqueue_hooks, "registrations": client.registrations}


def _template_call(
    client: Client | AsyncClient, task: Task | str, payload: Any, options: dict[str, Any]
) -> tuple[Call, str] | None:
    return client.templates.call(
        client.settings, client.declarations, client.registrations, task, payload, options
    )


def _first(op: Op[list[EnqueueResult]]) -> Op[EnqueueResult]:
    return (yield from op)[0]


def _declarations(settings: Settings, registry: Registry | None, strict: bool | None) -> Declarations:
    return Declarations(
        local=registry.declarations() if registry is not None else {},
        strict=settings.strict_types if strict is None else strict,
    )


def _target(url: str | RedisTarget | None) -> RedisTarget:
    if isinstance(url, RedisTarget):
        return url
    if url is None:
        from engine.config import default_url  # pydantic-settings loads only when no URL is given

        url = default_url()
    return parse_url(url)


class Client:
    """Synchronous producer and reader. ``Client("redis://localhost:6379/0")``; with no URL it
    uses ``REDIS_URL`` or the embedded server.

    Every enqueue applies the task type's declaration (queue, priority, retries, timeout,
    uniqueness; explicit options win): from ``registry`` when given, else as published by the
    workers that run it. ``strict=True`` refuses types declared nowhere (default: warn once
    per type and use the given or default queue). ``before_enqueue`` hooks (after the
    registry's ``@registry.before_enqueue`` ones) see each task last: see ``ops.EnqueueHook``."""

    def __init__(
        self,
        url: str | RedisTarget | None = None,
        *,
        settings: Settings | None = None,
        redis: Any = None,
        registry: Registry | None = None,
        strict: bool | None = None,
        before_enqueue: Sequence[ops.EnqueueHook] = (),
    ) -> None:
        self.settings = settings or Settings()
        self.target = _target(url) if redis is None else None
        if redis is None:
            redis = self.target.sync()  # type: ignore[union-attr]
            use_hiredis_packer(redis)
        self.backend = SyncBackend(redis)
        self.declarations = _declarations(self.settings, registry, strict)
        self.enqueue_hooks = [*(registry.enqueue_hooks if registry is not None else ()), *before_enqueue]
        self.registrations = ops.QueueRegistrations()  # the queues this client added to the registry
        self.templates = EnqueueTemplates()
        if registry is not None and registry.client is None:
            registry.client = self  # the registry's typed handles enqueue through this client

    def enqueue(
        self, task: Task | str, payload: Any = None, *, durable: bool | int = False, **options: Any
    ) -> EnqueueResult:
        """Enqueue one task. ``durable=True`` (or a replica count) also waits until replicas have
        it and raises ``ConnectionFailed`` if they do not (retrying is safe). ``priority`` is
        0..100 and 0 runs first."""
        templated = None if durable or self.enqueue_hooks else _template_call(self, task, payload, options)
        if templated is not None:  # (the common call: see engine.enqueue_templates)
            call, queue = templated
            status, task_id, state = self.backend.execute(call)
            return EnqueueResult(task_id, queue, state, status, self)
        return self.backend.run(_enqueue_one_op(self, build_task(task, payload, **options), durable))

    def result(self, task_id: str, queue: str | None = None, *, timeout: float | None = None) -> Any:
        """Wait until the task is final and return its result; raises ``TaskDead``,
        ``TaskCancelled`` (both ``TaskFailed``, with ``.info``) or ``ResultTimeout``. Woken by
        the queue's events, not by polling."""
        return results.wait_sync(self, task_id, queue, timeout)

    def enqueue_and_wait(
        self, task: Task | str, payload: Any = None, *, timeout: float | None = None, **options: Any
    ) -> Any:
        """Enqueue, then wait for the result (an RPC-style call). On ``ResultTimeout`` the task
        still runs; ``.wait()`` on a re-enqueue with the same ``id`` picks it up again."""
        return self.enqueue(task, payload, **options).wait(timeout=timeout)

    def pause(self, queue: str) -> bool:
        """Stop workers taking tasks from ``queue`` (it keeps accepting them); True if it changed."""
        return self.backend.run(admin.pause(self.settings, queue))

    def resume(self, queue: str) -> bool:
        return self.backend.run(admin.resume(self.settings, queue))

    def requeue(self, task_id: str, queue: str | None = None) -> bool:
        """Run a dead, retrying, scheduled, cancelled or completed task again now."""
        info = self.backend.run(ops.require_task(self.settings, task_id, queue))
        return bool(self.backend.run(admin.requeue(self.settings, info.queue, [task_id])))

    def enqueue_many(self, tasks: Sequence[Task], *, durable: bool | int = False) -> list[EnqueueResult]:
        return self.backend.run(_enqueue_op(self, tasks, durable)) if tasks else []

    def get_task(self, task_id: str, queue: str | None = None) -> TaskInfo | None:
        return self.backend.run(ops.get_task(self.settings, task_id, queue))

    def cancel(self, task_id: str, queue: str | None = None, reason: str = "cancelled by request") -> str:
        """Cancel a task; returns 'cancelled', 'requested' (it is running) or 'final:<state>'."""
        info = self.backend.run(ops.require_task(self.settings, task_id, queue))
        return self.backend.run(ops.cancel(self.settings, info.queue, [task_id], reason))[task_id]

    def run(self, op: Op[T]) -> T:
        """Run any engine operation (``engine.ops``, ``engine.inspect``, ``engine.admin``)."""
        return self.backend.run(op)

    def call(self, fn: Callable[Concatenate[Settings, P], Op[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``client.call(inspect.queues)`` runs ``inspect.queues(client.settings)``."""
        return self.backend.run(fn(self.settings, *args, **kwargs))

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of ``Client``."""

    def __init__(
        self,
        url: str | RedisTarget | None = None,
        *,
        settings: Settings | None = None,
        redis: Any = None,
        registry: Registry | None = None,
        strict: bool | None = None,
        before_enqueue: Sequence[ops.EnqueueHook] = (),
    ) -> None:
        self.settings = settings or Settings()
        self.target = _target(url) if redis is None else None
        if redis is None:
            redis = self.target.aio()  # type: ignore[union-attr]
            use_hiredis_packer(redis)
        self.backend = AsyncBackend(redis)
        self.declarations = _declarations(self.settings, registry, strict)
        self.enqueue_hooks = [*(registry.enqueue_hooks if registry is not None else ()), *before_enqueue]
        self.registrations = ops.QueueRegistrations()  # the queues this client added to the registry
        self.templates = EnqueueTemplates()

    async def enqueue(
        self, task: Task | str, payload: Any = None, *, durable: bool | int = False, **options: Any
    ) -> EnqueueResult:
        """See ``Client.enqueue``."""
        templated = None if durable or self.enqueue_hooks else _template_call(self, task, payload, options)
        if templated is not None:
            call, queue = templated
            status, task_id, state = await self.backend.execute(call)
            return EnqueueResult(task_id, queue, state, status, self)
        return await self.backend.run(_enqueue_one_op(self, build_task(task, payload, **options), durable))

    async def result(
        self,
        task_id: str,
        queue: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as Client.result: raises ResultTimeout
    ) -> Any:
        """See ``Client.result``."""
        return await results.wait_async(self, task_id, queue, timeout)

    async def enqueue_and_wait(
        self,
        task: Task | str,
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as Client.enqueue_and_wait
        **options: Any,
    ) -> Any:
        return await (await self.enqueue(task, payload, **options)).wait_async(timeout=timeout)

    async def pause(self, queue: str) -> bool:
        return await self.backend.run(admin.pause(self.settings, queue))

    async def resume(self, queue: str) -> bool:
        return await self.backend.run(admin.resume(self.settings, queue))

    async def requeue(self, task_id: str, queue: str | None = None) -> bool:
        info = await self.backend.run(ops.require_task(self.settings, task_id, queue))
        return bool(await self.backend.run(admin.requeue(self.settings, info.queue, [task_id])))

    async def enqueue_many(
        self, tasks: Sequence[Task], *, durable: bool | int = False
    ) -> list[EnqueueResult]:
        return await self.backend.run(_enqueue_op(self, tasks, durable)) if tasks else []

    async def get_task(self, task_id: str, queue: str | None = None) -> TaskInfo | None:
        return await self.backend.run(ops.get_task(self.settings, task_id, queue))

    async def cancel(
        self, task_id: str, queue: str | None = None, reason: str = "cancelled by request"
    ) -> str:
        info = await self.backend.run(ops.require_task(self.settings, task_id, queue))
        return (await self.backend.run(ops.cancel(self.settings, info.queue, [task_id], reason)))[task_id]

    async def run(self, op: Op[T]) -> T:
        return await self.backend.run(op)

    async def call(
        self, fn: Callable[Concatenate[Settings, P], Op[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``await client.call(inspect.queues)`` runs ``inspect.queues(client.settings)``."""
        return await self.backend.run(fn(self.settings, *args, **kwargs))

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
