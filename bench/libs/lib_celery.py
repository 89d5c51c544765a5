from __future__ import annotations

from typing import Any

from bench import record
from bench.libs import QUEUE, concurrency


class CeleryAdapter:
    name = "celery"
    has_batch = False
    config = (
        f"redis broker, no result backend, worker pool=threads concurrency={concurrency(10)}, "
        "no mingle/gossip/heartbeat"
    )

    def __init__(self, url: str) -> None:
        from celery import Celery

        self.app = Celery("bench", broker=url)
        self.app.conf.update(
            task_ignore_result=True,
            task_default_queue=QUEUE,
            worker_hijack_root_logger=False,
            broker_connection_retry_on_startup=True,
        )

        @self.app.task(name="noop")
        def noop(ts: float) -> None:
            record.done(ts)

        self.noop: Any = noop

    def version(self) -> str:
        from importlib.metadata import version

        return version("celery")

    def enqueue_each(self, tss: list[float]) -> None:
        for ts in tss:
            self.noop.delay(ts)

    def enqueue_batch(self, tss: list[float]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        worker = self.app.Worker(
            pool="threads",
            concurrency=concurrency(10),
            loglevel="ERROR",
            quiet=True,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
            queues=[QUEUE],
        )
        worker.start()

    def close(self) -> None:
        pass


def make(url: str) -> CeleryAdapter:
    return CeleryAdapter(url)
