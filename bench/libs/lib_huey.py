from __future__ import annotations

from typing import Any

from bench import record
from bench.libs import QUEUE


class HueyAdapter:
    name = "huey"
    has_batch = False
    config = "RedisHuey (blocking BRPOP), consumer with 10 worker threads, results off"
    def_handler = True
    """Its no-op is a plain ``def`` always (huey runs handlers in threads)."""

    def __init__(self, url: str) -> None:
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

        logging.getLogger("huey").setLevel(logging.ERROR)
        self.huey.create_consumer(workers=10, worker_type="thread", periodic=False).run()

    def close(self) -> None:
        pass


def make(url: str) -> HueyAdapter:
    return HueyAdapter(url)
