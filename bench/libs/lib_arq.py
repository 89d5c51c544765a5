from __future__ import annotations

import asyncio
from typing import Any

from bench import record
from bench.libs import QUEUE, concurrency


async def noop(ctx: Any, ts: float) -> None:
    record.done(ts)


class ArqAdapter:
    name = "arq"
    has_batch = False
    config = (
        f"arq.Worker max_jobs {concurrency(10)}, poll_delay 0.5 s (defaults: max_jobs 10), "
        "results kept (default)"
    )

    def __init__(self, url: str) -> None:
        from arq.connections import RedisSettings

        self.settings = RedisSettings.from_dsn(url)
        self.loop = asyncio.new_event_loop()
        self.pool: Any = None

    def _pool(self) -> Any:
        from arq import create_pool

        if self.pool is None:
            self.pool = self.loop.run_until_complete(
                create_pool(self.settings, default_queue_name=f"arq:{QUEUE}")
            )
        return self.pool

    def version(self) -> str:
        from importlib.metadata import version

        return version("arq")

    def enqueue_each(self, tss: list[float]) -> None:
        pool = self._pool()

        async def go() -> None:
            for ts in tss:
                await pool.enqueue_job("noop", ts)

        self.loop.run_until_complete(go())

    def enqueue_batch(self, tss: list[float]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        import logging

        from arq.worker import Worker, func

        logging.getLogger("arq").setLevel(logging.ERROR)
        Worker(
            functions=[func(noop, name="noop")],
            redis_settings=self.settings,
            queue_name=f"arq:{QUEUE}",
            max_jobs=concurrency(10),
            handle_signals=False,
        ).run()

    def close(self) -> None:
        if self.pool is not None:
            self.loop.run_until_complete(self.pool.aclose())


def make(url: str) -> ArqAdapter:
    return ArqAdapter(url)
