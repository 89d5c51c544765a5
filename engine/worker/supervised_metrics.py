"""One /metrics and /health for all the worker processes of ``rediq-worker --processes N``.

prometheus-client's multiprocess mode (the library's way for pre-forked servers): the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a directory of its own before it starts the
children; each child's counters, histograms and gauges write their values to files there,
and the supervisor's ``MultiProcessCollector`` sums them on each scrape. Counters of a child
that exited stay in the sums (totals never go back); its live gauges (tasks in flight, overdue
slots) are dropped when the supervisor sees it exit (``supervisor.mark_dead``). Queue depths
are read from Redis by the supervisor itself, once per scrape rather than once per child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from engine import flow, inspect
from engine.client import Client
from engine.config import RediqConfig
from engine.connection import RedisTarget
from engine.metrics import (
    GroupBacklogCollector,
    LabelPolicy,
    MetricsServer,
    QueueDepthCollector,
    WorkerMetrics,
)
from engine.worker.supervisor import METRICS_DIR_ENV, Supervisor

if TYPE_CHECKING:  # the driver is already imported wherever a worker runs
    from engine.worker.driver import Worker

log = logging.getLogger("rediq.metrics")

MIRROR_S = 1.0
"""How often a child copies its in-flight and overdue counts into its metrics files."""


class _ProcessesCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        alive = GaugeMetricFamily("rediq_worker_processes", "Worker processes running under the supervisor")
        alive.add_metric([], self.supervisor.alive())
        restarts = GaugeMetricFamily(
            "rediq_worker_process_restarts", "Worker processes restarted after a crash since start"
        )
        restarts.add_metric([], self.supervisor.restarts)
        yield alive
        yield restarts


class SupervisorMetrics:
    """What the supervisor's endpoint serves: every child's figures summed, queue depths, and
    how many children run. Healthy while Redis answers and at least one child runs."""

    def __init__(
        self, directory: str, supervisor: Supervisor, labels: LabelPolicy, reader: Client, queues: list[str]
    ) -> None:
        self.supervisor = supervisor
        self.served_queues = queues
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]  # untyped in the library
        self.depths = QueueDepthCollector(lambda: reader.call(inspect.queues), labels)
        self.registry.register(self.depths)
        # group backlogs are a Redis read like the depths: once per scrape, not once per child
        self.registry.register(
            GroupBacklogCollector(lambda: reader.call(flow.group_backlogs, queues), labels)
        )
        self.registry.register(_ProcessesCollector(supervisor))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> dict[str, Any]:
        self.depths.refresh(force=True)
        connected = self.depths.redis_connected
        alive = self.supervisor.alive()
        return {
            "status": "ok" if connected and alive >= 1 else "degraded",
            "redis_connected": connected,
            "processes": alive,
            "processes_configured": self.supervisor.core.processes,
            "queues": self.served_queues,
        }


@contextlib.contextmanager
def serve_supervisor_metrics(
    supervisor: Supervisor,
    config: RediqConfig,
    target: RedisTarget,
    task_types: Iterable[str],
    queues: list[str],
) -> Iterator[MetricsServer]:
    """Serve ``SupervisorMetrics`` on the configured metrics port while in the block."""
    assert supervisor.metrics_dir is not None
    reader = Client(target, settings=config.engine_settings())
    labels = LabelPolicy(task_types, queues)
    metrics = SupervisorMetrics(supervisor.metrics_dir, supervisor, labels, reader, queues)
    server = MetricsServer(metrics, config.metrics_host, config.effective_metrics_port).start()
    host, port = server.address
    log.info("serving http://%s:%d/metrics and /health for all worker processes", host, port)
    try:
        yield server
    finally:
        server.stop()
        reader.close()


def mirror_child_metrics(
    worker: Worker, task_types: Iterable[str], label_queues: Iterable[str], queues: list[str]
) -> WorkerMetrics:
    """In a supervised child: record outcomes into the multiprocess files (the supervisor
    serves them), and copy the worker's live counts there every ``MIRROR_S``."""
    if not os.environ.get(METRICS_DIR_ENV):
        raise RuntimeError(f"a supervised worker's metrics need ${METRICS_DIR_ENV}")
    metrics = WorkerMetrics(LabelPolicy(task_types, label_queues), lambda: [], served_queues=queues)
    worker.add_listener(metrics.observe)
    worker.add_fence_listener(metrics.observe_fenced)
    overdue = Gauge(
        "rediq_worker_overdue_slots",
        "Slots held by sync handlers past their timeout (or cancel) that have not returned",
        multiprocess_mode="livesum",
        registry=None,
    )
    loop_errors = Counter(
        "rediq_worker_loop_errors",
        "Exceptions in the worker's background loops (logged; the loop goes on)",
        ["loop"],
        registry=None,
    )
    throttled = Counter(
        "rediq_worker_throttled_seconds",
        "Time this worker waited for a queue's rate limit (next token or a RateLimited pause)",
        ["queue"],
        registry=None,
    )
    reported: dict[str, int] = {}
    throttled_reported: dict[str, float] = {}

    def mirror() -> None:
        stop = threading.Event()
        while not stop.wait(MIRROR_S):
            metrics.in_flight.set(float(worker.in_flight))
            overdue.set(float(worker.overdue_slots))
            by_kind: dict[str, int] = {}
            for loop, count in dict(worker.loop_errors).items():
                kind = loop.partition("-")[0]  # bounded label values, as WorkerStateCollector
                by_kind[kind] = by_kind.get(kind, 0) + count
            for kind, count in by_kind.items():
                if count > reported.get(kind, 0):
                    loop_errors.labels(kind).inc(count - reported.get(kind, 0))
                    reported[kind] = count
            for queue, seconds in dict(worker.throttled_s).items():  # the worker's own queues: bounded
                if seconds > throttled_reported.get(queue, 0.0):
                    throttled.labels(queue).inc(seconds - throttled_reported.get(queue, 0.0))
                    throttled_reported[queue] = seconds

    threading.Thread(target=mirror, name="rediq-metrics-mirror", daemon=True).start()
    return metrics
