"""Producer API: ``Client`` (sync) and ``AsyncClient`` with the same surface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import ValidationError

from engine import ops
from engine.backend import AsyncBackend, Op, SyncBackend, use_hiredis_packer
from engine.connection import RedisTarget, parse_url
from engine.errors import InvalidTask
from engine.ops import EnqueueResult, Settings
from engine.task import Task, TaskInfo

P = ParamSpec("P")
T = TypeVar("T")


def build_task(task_or_type: Task | str, payload: Any = None, **options: Any) -> Task:
    """A ``Task`` from either a ready model or a type plus options, with one-line errors."""
    if isinstance(task_or_type, Task):
        if payload is not None or options:
            raise InvalidTask("pass either a Task or a type with options, not both")
        return task_or_type
    deps = options.get("depends_on")
    if deps is not None:
        options["depends_on"] = tuple(d.ref if isinstance(d, EnqueueResult) else str(d) for d in deps)
    try:
        return Task(type=task_or_type, payload=payload, **options)
    except ValidationError as exc:
        raise InvalidTask(validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    """The first pydantic error as one line naming the field: ``priority must be 0..100, got 250``."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ()))
    message = str(err.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if field and not message.startswith(field):
        message = f"{field}: {message}"
    return message


def _enqueue_op(
    client: Client | AsyncClient, tasks: Sequence[Task], durable: bool | int
) -> Op[list[EnqueueResult]]:
    op = ops.enqueue_many(client.settings, tasks)
    if not durable:
        return op
    if client.target is not None and client.target.mode == "cluster":
        raise InvalidTask(
            "durable enqueue is not supported on Redis Cluster yet",
            fix="Use it with a single primary or Sentinel, or rely on min-replicas-to-write",
        )
    return ops.durable(op, replicas=1 if durable is True else int(durable))


def _target(url: str | RedisTarget | None) -> RedisTarget:
    if isinstance(url, RedisTarget):
        return url
    if url is None:
        from engine.embedded import default_url

        url = default_url()
    return parse_url(url)


class Client:
    """Synchronous producer and reader. ``Client("redis://localhost:6379/0")``; with no URL it
    uses ``REDIS_URL`` or the embedded server."""

    def __init__(
        self, url: str | RedisTarget | None = None, *, settings: Settings | None = None, redis: Any = None
    ) -> None:
        self.settings = settings or Settings()
        self.target = _target(url) if redis is None else None
        if redis is None:
            redis = self.target.sync()  # type: ignore[union-attr]
            use_hiredis_packer(redis)
        self.backend = SyncBackend(redis)

    def enqueue(
        self, task: Task | str, payload: Any = None, *, durable: bool | int = False, **options: Any
    ) -> EnqueueResult:
        """Enqueue one task. ``durable=True`` (or a replica count) also waits until replicas have
        it and raises ``ConnectionFailed`` if they do not (retrying is safe)."""
        return self.backend.run(_enqueue_op(self, [build_task(task, payload, **options)], durable))[0]

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
        self, url: str | RedisTarget | None = None, *, settings: Settings | None = None, redis: Any = None
    ) -> None:
        self.settings = settings or Settings()
        self.target = _target(url) if redis is None else None
        if redis is None:
            redis = self.target.aio()  # type: ignore[union-attr]
            use_hiredis_packer(redis)
        self.backend = AsyncBackend(redis)

    async def enqueue(
        self, task: Task | str, payload: Any = None, *, durable: bool | int = False, **options: Any
    ) -> EnqueueResult:
        op = _enqueue_op(self, [build_task(task, payload, **options)], durable)
        return (await self.backend.run(op))[0]

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
