from __future__ import annotations

import time
from typing import Any

from bench import record
from bench.libs import QUEUE, concurrency


class DramatiqAdapter:
    name = "dramatiq"
    has_batch = False
    config = f"RedisBroker, dramatiq.Worker with {concurrency(8)} threads (default 8), default middleware"

    def __init__(self, url: str) -> None:
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        self.broker = RedisBroker(url=url)
        dramatiq.set_broker(self.broker)

        @dramatiq.actor(queue_name=QUEUE, actor_name="noop", max_retries=0)
        def noop(ts: float) -> None:
            record.done(ts)

        self.noop: Any = noop

    def version(self) -> str:
        from importlib.metadata import version

        return version("dramatiq")

    def enqueue_each(self, tss: list[float]) -> None:
        for ts in tss:
            self.noop.send(ts)

    def enqueue_batch(self, tss: list[float]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        import dramatiq

        worker = dramatiq.Worker(self.broker, worker_threads=concurrency(8))
        worker.start()
        while True:
            time.sleep(3600)

    def close(self) -> None:
        pass


def make(url: str) -> DramatiqAdapter:
    return DramatiqAdapter(url)
