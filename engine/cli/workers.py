"""``rediq worker …``: list workers, or run one (``worker run``, the same as ``rediq-worker``)."""

from __future__ import annotations

from typing import Any

import click

from engine import inspect
from engine.cli.output import echo, emit_json, fmt_age, json_option, one_line, render_table
from engine.cli.state import CliState, pass_state
from engine.cli.worker_run import worker_run


def worker_json(worker: inspect.WorkerSummary) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "concurrency": worker.concurrency,
        "busy": worker.busy,
        "fenced": worker.fenced,
        "overdue": worker.overdue,
        "started_ms": worker.started_ms,
        "heartbeat_ms": worker.heartbeat_ms,
        "heartbeat_age_s": round(worker.heartbeat_age_s, 3),
        "uptime_s": round(worker.uptime_s, 3),
        "stale": worker.stale,
        "tasks": list(worker.tasks),
        "supervisor": worker.supervisor or None,
    }


class WorkerGroup(click.Group):
    """``rediq worker --app …`` (options right after ``worker``) is shorthand for
    ``rediq worker run --app …``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("worker", cls=WorkerGroup)
def worker_group() -> None:
    """List workers, or run one (same as rediq-worker; `rediq worker --app …` = `worker run`)."""


@worker_group.command("list")
@json_option
@pass_state
def worker_list(state: CliState, as_json: bool) -> None:
    """Registered workers, their load and heartbeat."""
    workers = state.client().call(inspect.workers)
    if as_json:
        emit_json([worker_json(w) for w in workers])
        return
    if not workers:
        echo("no workers registered")
        return
    rows = [
        [
            w.id,
            one_line(",".join(w.queues), 20),
            f"{w.busy}/{w.concurrency}",
            str(w.overdue) if w.overdue else "-",
            fmt_age(w.heartbeat_age_s),
            fmt_age(w.uptime_s),
            "stale" if w.stale else "ok",
            str(w.fenced),
        ]
        for w in workers
    ]
    head = ["WORKER", "QUEUES", "BUSY", "OVERDUE", "BEAT", "UP", "STATUS", "FENCED"]
    if any(w.supervisor for w in workers):  # `rediq-worker --processes N`: which children belong together
        head.append("SUPERVISOR")
        for row, w in zip(rows, workers, strict=True):
            row.append(w.supervisor or "-")
    echo(render_table(head, rows))


worker_group.add_command(worker_run)
