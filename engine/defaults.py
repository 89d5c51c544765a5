"""Every default of a setting, spelt once. The configuration model (``engine.config``), the
runtime objects (``engine.ops.Settings``, ``engine.worker.WorkerOptions``, the key space, the
metrics server) and the CLI read them from here, so a default changed here changes everywhere;
tests/pure/test_defaults.py checks that the configuration model and the runtime agree.

Task defaults (queue, priority, retries, timeout) live with the task model in ``engine.task``.
"""

from __future__ import annotations

from typing import Final

# keys
PREFIX: Final = "rediq"

# engine.ops.Settings (clients and workers)
RETENTION_S: Final = 86400.0
"""Completed and cancelled tasks are kept this long."""
DEAD_RETENTION_S: Final = 30 * 86400.0
QUARANTINE_S: Final = 7 * 86400.0
MAX_PAYLOAD_BYTES: Final = 512 * 1024
DEPENDENCY_FAILURE: Final = "cancel"
EVENTS: Final = True

# engine.worker.WorkerOptions
CONCURRENCY: Final = 10
LEASE_S: Final = 30.0
GRACE_S: Final = 30.0
POLL_INTERVAL_S: Final = 0.5
MAINTENANCE_S: Final = 5.0
"""Also the longest the cron scheduler sleeps between passes."""
EVENT_LOOP: Final = "auto"
POOL: Final = "thread"
UNKNOWN_TYPE_DELAY_S: Final = 5.0
UNKNOWN_TYPE_TIMEOUT_S: Final = 3600.0

# the worker's metrics endpoint
METRICS_HOST: Final = "127.0.0.1"
METRICS_PORT: Final = 9090
