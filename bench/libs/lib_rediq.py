from __future__ import annotations

import os
from typing import Any

from bench import record
from bench.libs import QUEUE


class RediqAdapter:
    name = "rediq"
    has_batch = True
    config = "1 asyncio worker, concurrency 10, prefetch 10 (default), leases+history+events on"

    def __init__(self, url: str) -> None:
        from engine.client import Client

        self.url = url
        self.client = Client(url)

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("rediq")
        except PackageNotFoundError:  # running from a checkout that is not pip-installed
            return "checkout"

    def enqueue_each(self, tss: list[float]) -> None:
        enqueue = self.client.enqueue
        for ts in tss:
            enqueue("noop", {"ts": ts}, queue=QUEUE)

    def enqueue_batch(self, tss: list[float]) -> None:
        from engine.task import Task

        self.client.enqueue_many([Task(type="noop", payload={"ts": ts}, queue=QUEUE) for ts in tss])

    def worker(self) -> None:
        import logging

        from engine.registry import Registry
        from engine.worker import Worker, WorkerOptions

        logging.getLogger("rediq").setLevel(logging.ERROR)
        registry = Registry()

        @registry.task("noop", queue=QUEUE)
        async def noop(ctx: Any, payload: dict[str, float]) -> None:
            record.done(payload["ts"])

        # WORKER_EVENT_LOOP=asyncio compares against the default (uvloop when installed)
        loop = os.environ.get("WORKER_EVENT_LOOP", "auto")
        options = WorkerOptions(queues=[QUEUE], concurrency=10, event_loop=loop)
        Worker(registry, self.url, options).run_forever()

    def close(self) -> None:
        self.client.backend.close()


def make(url: str) -> RediqAdapter:
    return RediqAdapter(url)
