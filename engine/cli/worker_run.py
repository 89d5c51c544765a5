"""``rediq worker run`` / ``rediq-worker``: the worker process (its options, logging, metrics)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys

import click

from engine import flow, inspect
from engine.cli.output import CONTEXT_SETTINGS
from engine.cli.state import CliState, resolve_url
from engine.client import Client
from engine.config import Processes, RediqConfig, check_processes, load_config
from engine.connection import parse_url
from engine.errors import RediqError, WorkerUnavailable
from engine.logs import LOG_FORMATS, LogFormat, WorkerField, log_outcome
from engine.logs import configure as configure_logging


@click.command("run", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--app", required=True, metavar="MODULE:REGISTRY", help="The task registry, e.g. myapp.tasks:registry."
)
@click.option(
    "--queues", metavar="A,B", help="Queues in priority order (default: $WORKER_QUEUES or the app's)."
)
@click.option("--concurrency", type=int, help="Handler slots (default: $WORKER_CONCURRENCY or 10).")
@click.option(
    "--processes",
    metavar="N|auto",
    callback=lambda ctx, param, value: _checked_processes(value),
    help="Worker processes under one supervisor (default: $WORKER_PROCESSES or 1; auto: one per "
    "core). Signals are forwarded to all, a crashed one is restarted with backoff, the metrics "
    "port serves one /metrics for all. Exits 0 after a clean drain, 1 if a process crash-loops.",
)
@click.option(
    "--weights",
    metavar="A=3,B=1",
    help="Weighted queue order instead of strict priority: each round draws the order by weight.",
)
@click.option("--lease", "lease_s", type=float, help="Task lease in seconds (default 30).")
@click.option("--grace", "grace_s", type=float, help="Drain time on SIGTERM in seconds (default 30).")
@click.option(
    "--pool",
    type=click.Choice(["thread", "process"]),
    help="Where sync handlers run: threads (default) or child processes killed at the task's timeout.",
)
@click.option(
    "--unknown-type-timeout",
    "unknown_type_timeout_s",
    type=float,
    help="Seconds a task of a type no worker has a handler for waits before it goes dead (default 3600).",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit 0 once the queues are drained (nothing pending, running, or due now): for scripts and CI.",
)
@click.option("--metrics-port", type=int, help="Serve /metrics and /health on this port.")
@click.option("--metrics-host", metavar="HOST", help="Metrics bind address (default 127.0.0.1).")
@click.option("--redis-url", "worker_redis_url", metavar="URL", help="Redis URL (overrides the global flag).")
@click.option("--prefix", "worker_prefix", metavar="PREFIX", help="Key prefix (overrides the global flag).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="Text lines (default) or one JSON object per line: time, level, worker, queue, task id, "
    "type, attempt, event (a task_finished event per attempt).",
)
@click.pass_context
def worker_run(
    ctx: click.Context,
    app: str,
    queues: str | None,
    concurrency: int | None,
    processes: Processes | None,
    weights: str | None,
    lease_s: float | None,
    grace_s: float | None,
    pool: str | None,
    unknown_type_timeout_s: float | None,
    burst: bool,
    metrics_port: int | None,
    metrics_host: str | None,
    worker_redis_url: str | None,
    worker_prefix: str | None,
    log_level: str,
    log_format: LogFormat | None,
) -> None:
    """Run a worker until SIGTERM/SIGINT (then drain for --grace seconds), or with --burst
    until its queues are drained."""
    parent = ctx.find_object(CliState) or CliState()
    chosen: LogFormat = log_format or ctx.find_root().params.get("log_format") or "text"
    # log lines carry Redis data (task ids, types, errors): shown with every control visible
    handler = configure_logging(log_level, chosen)
    config = load_config(
        redis_url=worker_redis_url or parent.redis_url,
        rediq_prefix=worker_prefix or parent.prefix,
        worker_queues=queues,
        worker_concurrency=concurrency,
        worker_processes=processes,
        worker_lease_s=lease_s,
        worker_grace_s=grace_s,
        worker_pool=pool,
        worker_unknown_type_timeout_s=unknown_type_timeout_s,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    parsed_weights = parse_weights(weights)
    if config.worker_processes != 1:
        ctx.exit(run_supervised(app, config, parsed_weights, log_level, chosen, burst=burst))
    ctx.exit(run_worker_process(app, config, parsed_weights, handler, chosen, burst=burst))


def _checked_processes(value: str | None) -> Processes | None:
    if value is None:
        return None
    try:
        return check_processes(value)
    except ValueError as exc:
        raise click.UsageError(f"--processes: {exc}") from None


def parse_weights(text: str | None) -> dict[str, int] | None:
    """``payment=3,reports=1`` -> ``{"payment": 3, "reports": 1}`` (one-line usage error otherwise)."""
    if not text:
        return None
    weights: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name or not value.strip().isdigit() or int(value) < 1:
            raise click.UsageError(
                f"--weights: {item.strip()!r} is not QUEUE=N with N >= 1 (e.g. payment=3,reports=1)"
            )
        weights[name] = int(value)
    return weights


def run_worker_process(
    app: str,
    config: RediqConfig,
    weights: dict[str, int] | None = None,
    log_handler: logging.Handler | None = None,
    log_format: LogFormat = "text",
    *,
    burst: bool = False,
    supervised: bool = False,
) -> int:
    """Run one worker in this process; ``supervised``: as a child of ``run_supervised`` (its
    metrics go to the supervisor's multiprocess directory instead of a server of its own)."""
    # start-up time: the worker runtime loads only for `worker run`
    from engine.registry import load_app

    try:
        from engine.worker import Worker, WorkerOptions  # may fail (compiled deps): WorkerUnavailable
    except ImportError as exc:
        raise WorkerUnavailable(f"the worker runtime cannot be imported: {exc}") from None

    if os.getcwd() not in sys.path:  # console scripts do not put the cwd on sys.path
        sys.path.insert(0, os.getcwd())
    registry = load_app(app)
    queues = config.worker_queues or registry.queues or ["default"]
    if weights:
        queues = list(dict.fromkeys([*queues, *weights]))
    target = parse_url(resolve_url(config))
    settings = config.engine_settings()
    options = WorkerOptions(
        queues=queues,
        concurrency=config.worker_concurrency,
        lease_s=config.worker_lease_s,
        grace_s=config.worker_grace_s,
        weights=weights,
        event_loop=config.worker_event_loop,
        pool=config.worker_pool,
        unknown_type_timeout_s=config.worker_unknown_type_timeout_s,
        burst=burst,
    )
    worker = Worker(registry, target, options, settings)
    if supervised:
        from engine.worker.supervisor import SUPERVISOR_ENV  # only in a supervised child

        worker.supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if log_handler is not None:
        log_handler.addFilter(WorkerField(worker.id))
    if log_format == "json":
        worker.add_listener(log_outcome)
    metrics_server = None
    reader: Client | None = None
    if config.metrics_on and supervised:
        # start-up time: metrics load only when they are served
        from engine.worker.supervised_metrics import mirror_child_metrics

        mirror_child_metrics(worker, registry.types, set(queues) | set(registry.queues), queues)
    elif config.metrics_on:
        # start-up time: metrics load only when they are served
        from engine.metrics import LabelPolicy, MetricsServer, WorkerMetrics, WorkerStateCollector

        reader = Client(target, settings=settings)
        labels = LabelPolicy(registry.types, set(queues) | set(registry.queues))
        reader_client = reader
        metrics = WorkerMetrics(
            labels,
            lambda: reader_client.call(inspect.queues),
            lambda: float(worker.in_flight),
            served_queues=queues,
            worker_state=WorkerStateCollector(
                lambda: worker.overdue_slots, lambda: worker.loop_errors, lambda: worker.throttled_s
            ),
            read_groups=lambda: reader_client.call(flow.group_backlogs, list(queues)),
        )
        worker.add_listener(metrics.observe)
        worker.add_fence_listener(metrics.observe_fenced)
        metrics_server = MetricsServer(metrics, config.metrics_host, config.effective_metrics_port).start()
        host, port = metrics_server.address
        logging.getLogger("rediq.metrics").info("serving http://%s:%d/metrics and /health", host, port)
    try:
        return worker.run_forever()
    finally:
        if metrics_server is not None:
            metrics_server.stop()
        if reader is not None:
            reader.close()


def run_supervised(
    app: str,
    config: RediqConfig,
    weights: dict[str, int] | None,
    log_level: str,
    log_format: LogFormat,
    *,
    burst: bool = False,
) -> int:
    """``--processes N``: supervise N worker processes (``engine.worker.supervisor``)."""
    # start-up time: the supervisor loads only for `--processes`
    from engine.registry import load_app
    from engine.worker import supervisor

    if os.getcwd() not in sys.path:  # console scripts do not put the cwd on sys.path
        sys.path.insert(0, os.getcwd())
    registry = load_app(app)  # a broken app fails here once, not in N children N times
    count = supervisor.process_count(config.worker_processes)
    os.environ[supervisor.SUPERVISOR_ENV] = f"{socket.gethostname()}:{os.getpid()}"
    args = (app, config, weights, log_level, log_format, burst)
    with contextlib.ExitStack() as stack:
        metrics_dir = stack.enter_context(supervisor.metrics_directory()) if config.metrics_on else None
        runner = supervisor.Supervisor(count, supervised_worker, args, metrics_dir=metrics_dir)
        if metrics_dir is not None:
            # start-up time: metrics load only when they are served
            from engine.worker.supervised_metrics import serve_supervisor_metrics

            queues = config.worker_queues or registry.queues or ["default"]
            target = parse_url(resolve_url(config))
            stack.enter_context(serve_supervisor_metrics(runner, config, target, registry.types, queues))
        logging.getLogger("rediq.supervisor").info("supervising %d worker processes", count)
        return runner.run()


def supervised_worker(
    app: str,
    config: RediqConfig,
    weights: dict[str, int] | None,
    log_level: str,
    log_format: LogFormat,
    burst: bool,
) -> None:
    """A supervised child (spawned: this runs in a fresh interpreter)."""
    # in the child process only
    from engine.worker.supervisor import watch_parent

    os.setpgrp()  # a terminal's Ctrl-C reaches only the supervisor, which forwards it once
    watch_parent()
    handler = configure_logging(log_level, log_format)
    try:
        code = run_worker_process(app, config, weights, handler, log_format, burst=burst, supervised=True)
    except RediqError as exc:
        logging.getLogger("rediq.worker").error("%s", exc)
        code = exc.exit_code
    sys.exit(code)
