from __future__ import annotations

import asyncio
from typing import Any

from bench import record
from bench.libs import QUEUE, concurrency


async def noop(ctx: Any, *, ts: float) -> None:
    record.done(ts)


class SaqAdapter:
    name = "saq"
    has_batch = False
    config = f"saq.Worker concurrency {concurrency(10)} (default 10)"

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.queue: Any = None

    def _queue(self) -> Any:
        from saq import Queue

        if self.queue is None:
            self.queue = Queue.from_url(self.url, name=QUEUE)
            self.loop.run_until_complete(self.queue.connect())
        return self.queue

    def version(self) -> str:
        from importlib.metadata import version

        return version("saq")

    def enqueue_each(self, tss: list[float]) -> None:
        queue = self._queue()

        async def go() -> None:
            for ts in tss:
                await queue.enqueue("noop", ts=ts)

        self.loop.run_until_complete(go())

    def enqueue_batch(self, tss: list[float]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        import logging

        from saq import Queue, Worker

        logging.getLogger("saq").setLevel(logging.ERROR)

        async def main() -> None:
            queue = Queue.from_url(self.url, name=QUEUE)
            await Worker(queue, functions=[noop], concurrency=concurrency(10)).start()

        asyncio.run(main())

    def close(self) -> None:
        if self.queue is not None:
            self.loop.run_until_complete(self.queue.disconnect())


def make(url: str) -> SaqAdapter:
    return SaqAdapter(url)
