"""``python -m rediq_tui.demo.run_worker URL [concurrency]``: a worker for the example app."""

from __future__ import annotations

import logging
import sys

from engine.worker import Worker, WorkerOptions
from rediq_tui.demo.tasks import QUEUE_WEIGHTS, QUEUES, registry

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    options = WorkerOptions(queues=QUEUES, concurrency=concurrency, lease_s=15, weights=QUEUE_WEIGHTS)
    sys.exit(Worker(registry, sys.argv[1], options).run_forever())
