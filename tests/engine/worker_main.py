"""A worker in its own process for crash tests:
``worker_main.py URL APP QUEUES [lease_s] [grace_s] [concurrency] [prefetch]``."""

from __future__ import annotations

import logging
import sys

from engine.registry import load_app
from engine.worker import Worker, WorkerOptions

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url, app, queues = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    lease_s = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    grace_s = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
    concurrency = int(sys.argv[6]) if len(sys.argv) > 6 else 4
    prefetch = int(sys.argv[7]) if len(sys.argv) > 7 else None
    options = WorkerOptions(
        queues=queues,
        concurrency=concurrency,
        prefetch=prefetch,
        lease_s=lease_s,
        grace_s=grace_s,
        heartbeat_s=lease_s / 3,
    )
    sys.exit(Worker(load_app(app), url, options).run_forever())
