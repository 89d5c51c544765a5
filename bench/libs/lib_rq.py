from __future__ import annotations

from bench import record
from bench.libs import QUEUE


def noop(ts: float) -> None:
    record.done(ts)


class RQAdapter:
    name = "rq"
    has_batch = True
    config = "rq.Worker (forks a work horse per job, the default)"

    def __init__(self, url: str) -> None:
        from redis import Redis
        from rq import Queue

        self.url = url
        self.conn = Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.conn)

    def version(self) -> str:
        from importlib.metadata import version

        return version("rq")

    def enqueue_each(self, tss: list[float]) -> None:
        for ts in tss:
            self.queue.enqueue(noop, ts)

    def enqueue_batch(self, tss: list[float]) -> None:
        from rq import Queue

        self.queue.enqueue_many([Queue.prepare_data(noop, args=(ts,)) for ts in tss])

    def worker(self) -> None:
        import logging

        from redis import Redis
        from rq import Queue, Worker

        logging.getLogger("rq.worker").setLevel(logging.ERROR)
        conn = Redis.from_url(self.url)
        Worker([Queue(QUEUE, connection=conn)], connection=conn).work(logging_level="ERROR")

    def close(self) -> None:
        self.conn.close()


def make(url: str) -> RQAdapter:
    return RQAdapter(url)
