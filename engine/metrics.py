"""Prometheus metrics and a health endpoint for a worker process.

``WorkerMetrics`` listens to a worker's task outcomes and serves ``/metrics`` (exposition
format) and ``/health`` (JSON) from a small HTTP server bound to 127.0.0.1 unless told
otherwise. Queue depth gauges are read from Redis on scrape (cached for a couple of seconds).

Label values come only from the app's registered task types and the known queues (the
worker's queues and those of registered types); anything else is reported as ``"other"``,
so a producer sending junk type or queue names cannot create unbounded series.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine import defaults, inspect
from engine.errors import MetricsBindError

log = logging.getLogger("rediq.metrics")

OTHER = "other"
QUEUE_STATES = ("pending", "active", "scheduled", "retry", "waiting", "dead", "expired")
DEPTH_CACHE_S = 2.0
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
ERROR_OUTCOMES = ("retry", "dead", "timeout")


class LabelPolicy:
    """Maps task types and queue names onto a bounded label set."""

    def __init__(self, task_types: Iterable[str], queues: Iterable[str]) -> None:
        self.task_types = frozenset(task_types)
        self.queues = frozenset(queues)

    def task_type(self, value: str) -> str:
        return value if value in self.task_types else OTHER

    def queue(self, value: str) -> str:
        return value if value in self.queues else OTHER


QueueReader = Callable[[], list[inspect.QueueSummary]]


class QueueDepthCollector(Collector):
    """``rediq_queue_<state>`` gauges per known queue, read from Redis at most every
    ``DEPTH_CACHE_S`` seconds; tasks of unknown queues are summed under ``queue="other"``."""

    def __init__(self, read_queues: QueueReader, labels: LabelPolicy) -> None:
        self.read_queues = read_queues
        self.labels = labels
        self.redis_connected = False
        self.queue_names: list[str] = []
        self._lock = threading.Lock()
        self._cached: list[inspect.QueueSummary] = []
        self._read_at = 0.0

    def refresh(self, force: bool = False) -> list[inspect.QueueSummary]:
        with self._lock:
            if force or time.monotonic() - self._read_at >= DEPTH_CACHE_S:
                try:
                    self._cached = self.read_queues()
                    self.redis_connected = True
                except Exception as exc:  # noqa: BLE001 - a scrape must never fail
                    log.warning("cannot read queue depths: %s", exc)
                    self.redis_connected = False
                    self._cached = []
                self._read_at = time.monotonic()
                self.queue_names = [q.name for q in self._cached]
            return self._cached

    def collect(self) -> Iterator[Metric]:
        summaries = self.refresh()
        families = {
            state: GaugeMetricFamily(
                f"rediq_queue_{state}", f"Tasks in state {state}, per queue", labels=["queue"]
            )
            for state in QUEUE_STATES
        }
        paused = GaugeMetricFamily("rediq_queue_paused", "1 when the queue is paused", labels=["queue"])
        totals: dict[str, dict[str, int]] = {}
        paused_by: dict[str, int] = {}
        for summary in summaries:
            label = self.labels.queue(summary.name)
            row = totals.setdefault(label, dict.fromkeys(QUEUE_STATES, 0))
            for state in QUEUE_STATES:
                row[state] += summary.count(state)
            paused_by[label] = max(paused_by.get(label, 0), int(summary.paused))
        for label, row in sorted(totals.items()):
            for state in QUEUE_STATES:
                families[state].add_metric([label], row[state])
            paused.add_metric([label], paused_by[label])
        up = GaugeMetricFamily("rediq_redis_up", "1 when the last queue read reached Redis")
        up.add_metric([], 1 if self.redis_connected else 0)
        yield from families.values()
        yield paused
        yield up


class WorkerStateCollector(Collector):
    """Figures the worker keeps itself: slots held by handlers past their timeout, and errors of
    its background loops (each logged and the loop restarted)."""

    def __init__(
        self,
        overdue: Callable[[], int],
        loop_errors: Callable[[], dict[str, int]],
        throttled: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self.overdue = overdue
        self.loop_errors = loop_errors
        self.throttled = throttled
        """Seconds slept on a queue's rate limit, per queue (the worker's own queues: bounded)."""

    def collect(self) -> Iterator[Metric]:
        overdue = GaugeMetricFamily(
            "rediq_worker_overdue_slots",
            "Slots held by sync handlers past their timeout (or cancel) that have not returned",
        )
        overdue.add_metric([], self.overdue())
        errors = CounterMetricFamily(
            "rediq_worker_loop_errors",
            "Exceptions in the worker's background loops (logged; the loop goes on)",
            labels=["loop"],
        )
        by_loop: dict[str, int] = {}
        for loop, count in dict(self.loop_errors()).items():
            kind = loop.partition("-")[0]  # 'inbox-<queue>' -> 'inbox': bounded label values
            by_loop[kind] = by_loop.get(kind, 0) + count
        for kind, count in sorted(by_loop.items()):
            errors.add_metric([kind], count)
        throttled = CounterMetricFamily(
            "rediq_worker_throttled_seconds",
            "Time this worker waited for a queue's rate limit (next token or a RateLimited pause)",
            labels=["queue"],
        )
        for queue, seconds in sorted(dict(self.throttled()).items()):
            throttled.add_metric([queue], seconds)
        yield overdue
        yield errors
        yield throttled


class GroupBacklogCollector(Collector):
    """``rediq_group_pending`` and ``rediq_group_running`` for each served queue's busiest
    concurrency groups (``engine.flow.group_backlogs``: the top 10 among the first 1,000 pending),
    so the series stay bounded whatever the producers name their groups; read at most every
    ``DEPTH_CACHE_S`` seconds."""

    def __init__(self, read: Callable[[], list[Any]], labels: LabelPolicy) -> None:
        self.read = read
        self.labels = labels
        self._cached: list[Any] = []
        self._read_at = 0.0
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= DEPTH_CACHE_S:
                try:
                    self._cached = self.read()
                except Exception as exc:  # noqa: BLE001 - a scrape must never fail
                    log.warning("cannot read group backlogs: %s", exc)
                    self._cached = []
                self._read_at = time.monotonic()
            rows = self._cached
        pending = GaugeMetricFamily(
            "rediq_group_pending",
            "Pending tasks of a queue's busiest concurrency groups (among the first 1,000 pending)",
            labels=["queue", "group"],
        )
        running = GaugeMetricFamily(
            "rediq_group_running", "Tasks of those groups holding a lease now", labels=["queue", "group"]
        )
        for row in rows:
            queue = self.labels.queue(row.queue)
            pending.add_metric([queue, row.group], row.pending)
            running.add_metric([queue, row.group], row.holding)
        yield pending
        yield running


class WorkerMetrics:
    """The worker's metrics. ``observe`` takes ``engine.worker.TaskOutcome``-like objects."""

    def __init__(
        self,
        labels: LabelPolicy,
        read_queues: QueueReader,
        in_flight: Callable[[], float] = lambda: 0,
        served_queues: Iterable[str] = (),
        worker_state: WorkerStateCollector | None = None,
        read_groups: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.labels = labels
        self.served_queues = list(served_queues)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the series count for nothing
        self.registry = CollectorRegistry(auto_describe=True)
        by = ["queue", "type"]
        self.processed = Counter(
            "rediq_task_processed", "Task attempts that completed", by, registry=self.registry
        )
        self.failed = Counter(
            "rediq_task_failed", "Tasks that failed for good (dead)", by, registry=self.registry
        )
        self.errors = Counter(
            "rediq_task_error",
            "Task attempts that raised or timed out, by outcome (retry, dead, timeout)",
            [*by, "outcome"],
            registry=self.registry,
        )
        # The user guide's name exactly (dashboards are built from it); the unit is seconds.
        self.duration = Histogram(
            "rediq_task_processing_duration",
            "Handler run time per attempt, in seconds",
            by,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.fenced = Counter(
            "rediq_fenced",
            "Calls about a task refused because their delivery was over (a lost lease, a cancel, "
            "delete or requeue meanwhile), by call (start, ack, fail, extend, release, progress)",
            ["queue", "call"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "rediq_worker_in_flight",
            "Tasks running in this worker",
            registry=self.registry,
            multiprocess_mode="livesum",  # --processes N: summed over the live children
        )
        self.in_flight.set_function(in_flight)
        self.depths = QueueDepthCollector(read_queues, labels)
        self.registry.register(self.depths)
        if worker_state is not None:
            self.registry.register(worker_state)
        if read_groups is not None:
            self.registry.register(GroupBacklogCollector(read_groups, labels))

    def observe(self, outcome: Any) -> None:
        """Record one finished attempt (a worker listener)."""
        queue = self.labels.queue(str(outcome.queue))
        task_type = self.labels.task_type(str(outcome.type))
        kind = str(outcome.outcome)
        if kind in ("completed", "retry", "dead", "timeout"):
            self.duration.labels(queue, task_type).observe(max(0.0, float(outcome.duration_s)))
        if kind == "completed":
            self.processed.labels(queue, task_type).inc()
        if kind in ERROR_OUTCOMES:
            self.errors.labels(queue, task_type, kind).inc()
        if kind == "dead":
            self.failed.labels(queue, task_type).inc()

    def observe_fenced(self, queue: str, call: str, n: int) -> None:
        """Record ``n`` refused calls (a worker fence listener)."""
        self.fenced.labels(self.labels.queue(queue), call).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> dict[str, Any]:
        self.depths.refresh(force=True)
        connected = self.depths.redis_connected
        return {
            "status": "ok" if connected else "degraded",
            "redis_connected": connected,
            "queues": self.served_queues,
        }


class Exposed(Protocol):
    """What ``MetricsServer`` serves: a worker's ``WorkerMetrics``, or a supervisor's (the
    sum of its worker processes'). ``health()["status"]`` is "ok" when healthy."""

    def exposition(self) -> bytes: ...

    def health(self) -> dict[str, Any]: ...


class MetricsServer:
    """``/metrics`` and ``/health`` over HTTP in a daemon thread."""

    def __init__(
        self, metrics: Exposed, host: str = defaults.METRICS_HOST, port: int = defaults.METRICS_PORT
    ) -> None:
        self.metrics = metrics
        handler = _handler_for(metrics)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise MetricsBindError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="rediq-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(metrics: Exposed) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/health":
                body = metrics.health()
                code = 200 if body["status"] == "ok" else 503
                self._send(code, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"error":"not found; try /metrics or /health"}', "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            log.debug("metrics %s", format % args)

    return Handler
