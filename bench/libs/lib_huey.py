from __future__ import annotations

import os
from typing import Any

from bench import record
from bench.libs import QUEUE, concurrency

WORKER_TYPE = os.environ.get("BENCH_HUEY_WORKER", "thread")
"""``thread`` (huey's default) or ``greenlet`` (gevent, monkey-patched in the worker process
only): 10 workers either way, unless ``--concurrency`` sets another number. On this 2-core
machine greenlets drained 1.3-1.4x threads (docs/reference/performance.md, "huey's fastest
worker")."""


class HueyAdapter:
    name = "huey"
    has_batch = False
    config = f"RedisHuey (blocking BRPOP), consumer with {concurrency(10)} worker {WORKER_TYPE}s, results off"
    def_handler = True
    """Its no-op is a plain ``def`` always (huey runs handlers in threads)."""

    def __init__(self, url: str) -> None:
        if WORKER_TYPE not in ("thread", "greenlet"):
            raise SystemExit(f"BENCH_HUEY_WORKER={WORKER_TYPE!r}: set it to thread or greenlet")
        from huey import RedisHuey

        self.huey = RedisHuey(QUEUE, url=url, results=False)

        @self.huey.task(name="noop")
        def noop(ts: float) -> None:
            record.done(ts)

        self.noop: Any = noop

    def version(self) -> str:
        from importlib.metadata import version

        return version("huey")

    def enqueue_each(self, tss: list[float]) -> None:
        for ts in tss:
            self.noop(ts)

    def enqueue_batch(self, tss: list[float]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        import logging

        if WORKER_TYPE == "greenlet":  # before the consumer opens its connections
            from gevent import monkey

            monkey.patch_all()
        logging.getLogger("huey").setLevel(logging.ERROR)
        self.huey.create_consumer(workers=concurrency(10), worker_type=WORKER_TYPE, periodic=False).run()

    def close(self) -> None:
        pass


def make(url: str) -> HueyAdapter:
    return HueyAdapter(url)
