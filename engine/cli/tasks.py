"""``rediq task …``: inspect, explain, cancel or retry one task; list and forget task types."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from engine import admin, explain, inspect, tasklog
from engine.cli.output import TABLE_WIDTH, echo, emit_json, fmt_ms, json_option, one_line, render_table
from engine.cli.state import CliState, pass_state
from engine.declarations import TypeInfo, forget, list_types
from engine.errors import InvalidTask, TaskNotFound
from engine.task import TaskInfo


@click.group("task")
def task_group() -> None:
    """Inspect, cancel or retry one task; list the declared task types."""


def require_task(state: CliState, task_id: str) -> TaskInfo:
    info = state.client().call(inspect.task, task_id)
    if info is None:
        raise TaskNotFound(f"no task with id {task_id!r}")
    return info


@task_group.command("inspect")
@click.argument("task_id", metavar="ID")
@json_option
@pass_state
def task_inspect(state: CliState, task_id: str, as_json: bool) -> None:
    """Every field of a task: payload, history, error, progress, dependencies."""
    info = require_task(state, task_id)
    if as_json:
        emit_json(info.model_dump(mode="json"))
        return
    lines = [
        ("id", info.id),
        ("type", info.type),
        ("queue", info.queue),
        ("state", str(info.state) + ("  (cancel requested)" if info.cancel_requested else "")),
        ("attempts", f"{info.attempts} of {info.max_retry + 1}"),
        ("priority", f"{info.priority} (0..100, 0 runs first)"),
        ("timeout", f"{info.timeout:g}s"),
        ("enqueued", fmt_ms(info.enqueued_at_ms)),
        ("due", fmt_ms(info.due_at_ms)),
        ("expires", fmt_ms(info.expires_at_ms) if info.expires_at_ms else "-"),
        ("started", fmt_ms(info.started_at_ms)),
        ("finished", fmt_ms(info.finished_at_ms)),
        ("worker", info.worker or "-"),
        ("unique key", info.unique_key or "-"),
        ("reason", info.reason or "-"),
    ]
    if info.progress is not None:
        lines.append(("progress", f"{info.progress:g}%  {info.progress_message or ''}".rstrip()))
    if info.metadata:
        lines.append(("metadata", json.dumps(info.metadata, sort_keys=True)))
    lines += [
        ("depends on", ", ".join(info.depends_on) or "-"),
        ("waiting on", ", ".join(info.waiting_on) or "-"),
        ("dependents", ", ".join(info.dependents) or "-"),
        ("payload", one_line(info.payload_raw, TABLE_WIDTH - 12) or "-"),
    ]
    if info.result is not None:
        lines.append(("result", one_line(json.dumps(info.result), TABLE_WIDTH - 12)))
    if info.last_error:
        lines.append(("error", info.last_error))
    for label, value in lines:
        echo(f"{label:<11} {value}")
    if info.traceback:
        echo("traceback:")
        echo(info.traceback.rstrip())
    if info.history:
        echo("history (newest first):")
        for entry in info.history:
            echo(f"  {fmt_ms(entry.at_ms)}  {entry.state:<9}  {one_line(entry.note, 50)}")


@task_group.command("logs")
@click.argument("task_id", metavar="ID")
@json_option
@pass_state
def task_logs(state: CliState, task_id: str, as_json: bool) -> None:
    """The lines a task's handler logged (ctx.log), oldest first; the last 100 are kept."""
    info = require_task(state, task_id)
    lines = state.client().call(tasklog.read, task_id, info.queue)
    if as_json:
        emit_json(
            [{"at_ms": x.at_ms, "level": x.level, "attempt": x.attempt, "message": x.message} for x in lines]
        )
        return
    if not lines:
        echo(f"task {task_id} has no log lines (a handler writes them with ctx.log)")
    for x in lines:
        echo(f"{fmt_ms(x.at_ms)}  {x.level:<7}  attempt {x.attempt}  {one_line(x.message, 1000)}")


def type_json(info: TypeInfo) -> dict[str, Any]:
    return {
        **asdict(info.declaration),
        "digest": info.declaration.digest,
        "served_by": list(info.served_by),
        "handlers_elsewhere": list(info.handlers_elsewhere),
        "other_versions": list(info.other_versions),
    }


@task_group.command("types")
@json_option
@pass_state
def task_types(state: CliState, as_json: bool) -> None:
    """Task types the running apps declare (queue, priority 0..100 with 0 first, retries,
    timeout) and the live workers that serve each. Workers publish them when they start."""
    client = state.client()
    types = client.run(list_types(client.settings.keyspace))
    if as_json:
        emit_json([type_json(t) for t in types])
        return
    if not types:
        echo("no task types declared: start a worker (rediq-worker --app ...) to publish its registry's")
        return
    rows = []
    for t in types:
        d = t.declaration
        served = f"{len(t.served_by)} worker(s)" if t.served_by else "NONE"
        if t.handlers_elsewhere:
            served += f", {len(t.handlers_elsewhere)} not on its queue"
        if t.other_versions:
            served += f", {len(t.other_versions)} other version"
        unique = f"{d.unique_ttl:g}s" if d.unique_ttl is not None else "-"
        rows.append(
            [d.task_type, d.queue, str(d.priority), str(d.max_retry), f"{d.timeout:g}s", unique, served]
        )
    echo(render_table(["TYPE", "QUEUE", "PRI", "RETRY", "TIMEOUT", "UNIQUE", "SERVED BY"], rows, flex=6))
    echo("PRI: 0..100, 0 runs first")


@task_group.command("forget")
@click.argument("task_types", metavar="TYPE...", nargs=-1, required=True)
@json_option
@pass_state
def task_forget(state: CliState, task_types: tuple[str, ...], as_json: bool) -> None:
    """Drop the published declarations of types no app has any more (producers without a
    registry then treat them as undeclared); a worker that has one publishes it again at start."""
    client = state.client()
    removed = client.run(forget(client.settings.keyspace, list(task_types)))
    if as_json:
        emit_json({"forgotten": removed})
    else:
        echo(f"{removed} declaration(s) forgotten")


@task_group.command("why")
@click.argument("task_id", metavar="ID")
@json_option
@pass_state
def task_why(state: CliState, task_id: str, as_json: bool) -> None:
    """Why a task is not running (paused queue, no worker, due later, waiting on a dependency…)."""
    explanation = state.client().call(explain.why, task_id)
    if as_json:
        emit_json(
            {
                "id": explanation.task_id,
                "queue": explanation.queue,
                "state": str(explanation.state),
                "blocked": explanation.blocked,
                "reasons": list(explanation.reasons),
                "causes": [{"reason": str(c.reason), "text": c.text} for c in explanation.causes],
                "position": explanation.position,
            }
        )
        return
    verdict = "blocked" if explanation.blocked else "not blocked"
    echo(f"task {explanation.task_id} in {explanation.queue}: {explanation.state}, {verdict}")
    for reason in explanation.reasons:
        echo(f"  - {reason}")


@task_group.command("cancel")
@click.argument("task_id", metavar="ID")
@json_option
@pass_state
def task_cancel(state: CliState, task_id: str, as_json: bool) -> None:
    """Cancel a task (a running one is asked to stop)."""
    info = require_task(state, task_id)
    result = state.client().cancel(task_id, info.queue, "cancelled by operator")
    if as_json:
        emit_json({"id": task_id, "queue": info.queue, "result": result})
    elif result == "cancelled":
        echo(f"task {task_id} cancelled")
    elif result == "requested":
        echo(f"task {task_id} is running; cancellation requested")
    else:
        echo(f"task {task_id} already finished ({result.removeprefix('final:')}); nothing to cancel")


@task_group.command("retry")
@click.argument("task_id", metavar="ID")
@json_option
@pass_state
def task_retry(state: CliState, task_id: str, as_json: bool) -> None:
    """Put a dead, retrying, scheduled, waiting or finished task back to pending now."""
    info = require_task(state, task_id)
    moved = state.client().call(admin.requeue, info.queue, [task_id])
    if task_id in moved.refused:
        raise InvalidTask(
            f"task {task_id} was not requeued: {moved.refused[task_id]}",
            fix="Cancel or finish the task holding the key first, then retry this one",
        )
    if not moved:
        raise InvalidTask(
            f"task {task_id} is {info.state}; it cannot be retried now",
            fix="Only dead, retry, scheduled, waiting, cancelled or completed tasks can be retried",
        )
    if as_json:
        emit_json({"id": task_id, "queue": info.queue, "previous_state": str(info.state), "state": "pending"})
    else:
        echo(f"task {task_id} requeued (was {info.state})")
