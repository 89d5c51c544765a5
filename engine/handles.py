"""Typed task handles: what ``@registry.task(...)`` returns.

``charge.enqueue(Payment(order_id="o-1", amount=1999))`` enqueues with the type's declared
queue and defaults, and mypy checks the payload against the handler's payload parameter.
Calling the handle calls the handler itself (for unit tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from engine.client import AsyncClient, Client

if TYPE_CHECKING:
    from engine.ops import EnqueueResult
    from engine.registry import Registry
    from engine.task import Task

M = TypeVar("M")
R = TypeVar("R")


class TaskHandle(Generic[M, R]):
    """A registered task type with a payload of type ``M``; its handler returns ``R``."""

    def __init__(self, registry: Registry, task_type: str, handler: Callable[[Any, M], R]) -> None:
        self.registry = registry
        self.task_type = task_type
        self.handler = handler
        self.__name__ = getattr(handler, "__name__", task_type)
        self.__doc__ = handler.__doc__
        self.__wrapped__ = handler

    def __call__(self, ctx: Any, payload: M) -> R:
        return self.handler(ctx, payload)

    def __repr__(self) -> str:
        return f"<task {self.task_type!r} handled by {self.__name__}>"

    def task(self, payload: M, **options: Any) -> Task:
        """The ``Task`` ``enqueue`` would submit (for ``enqueue_many``): the type's declared
        defaults, overridden by ``options`` (``delay``, ``depends_on``, ``priority``, ...)."""
        return self.registry.make_task(self.task_type, payload, **options)

    def enqueue(self, payload: M, *, client: Client | None = None, **options: Any) -> EnqueueResult:
        """Enqueue one task of this type through ``client`` (default: the registry's client)."""
        client = client or self._client()
        if not options and self._applied_by(client):
            return client.enqueue(self.task_type, payload)  # the same task, from a template
        return client.enqueue(self.task(payload, **options))

    async def enqueue_async(
        self, payload: M, *, client: AsyncClient | None = None, **options: Any
    ) -> EnqueueResult:
        """``enqueue`` through an ``AsyncClient`` (default: one per event loop, for this registry)."""
        client = client or self._async_client()
        if not options and self._applied_by(client):
            return await client.enqueue(self.task_type, payload)
        return await client.enqueue(self.task(payload, **options))

    def _applied_by(self, client: Client | AsyncClient) -> bool:
        """Whether ``client`` applies this registry's declaration of the type to a bare
        ``enqueue(type, payload)``: then that call makes the task ``task(payload)`` makes, and
        can be sent from the client's template (engine/enqueue_templates.py)."""
        definition = self.registry.definitions.get(self.task_type)
        applied = client.declarations.local.get(self.task_type)
        return definition is not None and applied == definition.declaration

    def enqueue_and_wait(
        self, payload: M, *, timeout: float | None = None, client: Client | None = None, **options: Any
    ) -> Any:
        """Enqueue and wait for the task's result (see ``Client.enqueue_and_wait``)."""
        return (client or self._client()).enqueue_and_wait(self.task(payload, **options), timeout=timeout)

    def _client(self) -> Client:
        if self.registry.client is None:
            self.registry.client = Client(registry=self.registry)
        return self.registry.client

    def _async_client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        found = self.registry.async_clients.get(id(loop))
        # an id can be reused by a later loop: the client must belong to this very loop
        if found is None or found[0] is not loop:
            found = (loop, AsyncClient(registry=self.registry))
            self.registry.async_clients[id(loop)] = found
        return found[1]
