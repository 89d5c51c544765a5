"""A chaos worker process: ``worker_main.py URL QUEUES LEASE_S CONCURRENCY [HEARTBEAT_S]``
(app: tests.chaos.apps)."""

from __future__ import annotations

import logging
import os
import sys

from engine.ops import Settings
from engine.worker import Worker, WorkerOptions
from tests.chaos.apps import chaos

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    url, queues = sys.argv[1], sys.argv[2].split(",")
    lease_s = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    heartbeat_s = float(sys.argv[5]) if len(sys.argv) > 5 else lease_s / 3
    options = WorkerOptions(
        queues=queues,
        concurrency=concurrency,
        lease_s=lease_s,
        grace_s=5.0,
        heartbeat_s=heartbeat_s,
        poll_interval_s=0.2,
        maintenance_s=1.0,
        # the memory scenario buries its tasks of a type nobody handles at once (0), as before
        # unknown types waited for a worker that knows them
        unknown_type_timeout_s=float(os.environ.get("REDIQ_CHAOS_UNKNOWN_TYPE_TIMEOUT_S", 3600)),
    )
    settings = Settings(
        retention_s=float(os.environ.get("REDIQ_CHAOS_RETENTION_S", 86400)),
        dead_retention_s=float(os.environ.get("REDIQ_CHAOS_DEAD_RETENTION_S", 30 * 86400)),
    )
    sys.exit(Worker(chaos, url, options, settings).run_forever())
