from __future__ import annotations

import os
from typing import Any

from bench import record
from bench.libs import QUEUE, concurrency


class RediqAdapter:
    name = "rediq"
    has_batch = True
    config = (
        f"1 asyncio worker, concurrency {concurrency(10)}, prefetch 0 (default), leases+history+events on"
    )
    def_handler = True
    """The no-op can be a plain ``def`` (run in the worker's threads): ``BENCH_HANDLER=def``."""

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
        if os.environ.get("BENCH_HANDLER") == "def":

            @registry.task("noop", queue=QUEUE)
            def noop_def(ctx: Any, payload: dict[str, float]) -> None:
                record.done(payload["ts"])

        else:

            @registry.task("noop", queue=QUEUE)
            async def noop(ctx: Any, payload: dict[str, float]) -> None:
                record.done(payload["ts"])

        # WORKER_EVENT_LOOP=asyncio compares against the default (uvloop when installed)
        loop = os.environ.get("WORKER_EVENT_LOOP", "auto")
        # BENCH_PREFETCH=10 measures a worker with a prefetch allowance (the default until 2026-12-04)
        prefetch = os.environ.get("BENCH_PREFETCH")
        options = WorkerOptions(
            queues=[QUEUE],
            concurrency=concurrency(10),
            prefetch=None if prefetch is None else int(prefetch),
            event_loop=loop,
        )
        Worker(registry, self.url, options).run_forever()

    def worker_supervised(self, processes: int) -> None:
        """``rediq-worker --processes N``'s supervisor running ``worker()`` in N children
        (forked, unlike the CLI's spawned ones, so that they share the harness's counters)."""
        from engine.worker.supervisor import Supervisor

        Supervisor(processes, self.worker, start_method="fork").run()

    def close(self) -> None:
        self.client.backend.close()


def make(url: str) -> RediqAdapter:
    return RediqAdapter(url)
