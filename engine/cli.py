"""``rediq`` (operator CLI) and ``rediq-worker`` (worker process).

Every failure is one line on stderr and a distinct exit code, never a traceback: engine
errors print as ``E00X: message. fix`` (see ``engine.errors`` and docs/operations.md).
Read commands take ``--json`` with a stable, documented schema.

Shell completion (click's own): ``eval "$(_REDIQ_COMPLETE=bash_source rediq)"`` in
``~/.bashrc``, ``eval "$(_REDIQ_COMPLETE=zsh_source rediq)"`` in ``~/.zshrc``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from typing import Any

import click
from pydantic import ValidationError

from engine import admin, doctor, embedded, explain, inspect, lua
from engine.client import Client, validation_message
from engine.config import RediqConfig, config_file_path, config_sources, load_config
from engine.connection import mask_url, parse_url
from engine.declarations import TypeInfo
from engine.display import visible
from engine.errors import ConsoleMissing, InvalidCron, InvalidTask, RediqError, WorkerUnavailable
from engine.logs import LOG_FORMATS, LogFormat, WorkerField, log_outcome
from engine.logs import configure as configure_logging
from engine.task import TaskInfo, TaskState

TABLE_WIDTH = 80
SAMPLE_STATES = ("pending", "active", "retry", "dead")
FLUSHABLE_STATES = ("dead", "completed", "cancelled", "expired")

# Exit codes besides the engine's (RediqError.exit_code, 2..9): documented in docs/operations.md.
EXIT_ABORTED = 1
EXIT_USAGE = 64
EXIT_REDIS = 10
EXIT_INVALID = 11
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": TABLE_WIDTH}


# ------------------------------------------------------------------------------ state


@dataclass
class CliState:
    """Global flags and the lazily built config and client of one invocation."""

    redis_url: str | None = None
    prefix: str | None = None
    _config: RediqConfig | None = None
    _client: Client | None = None

    def flags(self, **extra: Any) -> dict[str, Any]:
        return {"redis_url": self.redis_url, "rediq_prefix": self.prefix, **extra}

    def config(self) -> RediqConfig:
        if self._config is None:
            self._config = load_config(**self.flags())
        return self._config

    def url(self) -> str:
        return resolve_url(self.config())

    def client(self) -> Client:
        if self._client is None:
            config = self.config()
            self._client = Client(parse_url(resolve_url(config)), settings=config.engine_settings())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def resolve_url(config: RediqConfig) -> str:
    """The configured URL, else the embedded server's (started on demand, announced once)."""
    if config.redis_url:
        parse_url(config.redis_url)  # fail early, one line, on a malformed URL
        return config.redis_url
    url = embedded.ensure_server()
    embedded.announce(url)
    return url


pass_state = click.make_pass_decorator(CliState, ensure=True)


def complete_queue(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of queue names: read from Redis with short timeouts, never starting the
    embedded server, and silent on any failure."""
    import redis

    try:
        root = ctx.find_root().params
        config = load_config(redis_url=root.get("redis_url"), rediq_prefix=root.get("prefix"))
        url = config.redis_url or embedded.status().url
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            return []
        client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )
        try:
            names = client.smembers(config.engine_settings().keyspace.queues)
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - completion must never print an error
        return []
    return sorted(str(n) for n in names if str(n).startswith(incomplete))


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: docs/operations.md).")(
        fn
    )


def emit_json(value: Any) -> None:
    echo(json.dumps(value, indent=2, sort_keys=True, default=str))


# ------------------------------------------------------------------------------ formatting


def fmt_count(n: int) -> str:
    if n < 100_000:
        return str(n)
    if n < 10_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1_000_000:.0f}M"


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def fmt_ms(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def echo(text: object = "") -> None:
    """Every line the CLI prints. Text quotes Redis data (task types, ids, errors, queue and
    worker names), so each control in it shows visibly (``engine.display``); ``--json`` output
    passes unchanged, as the encoder already escapes every control."""
    click.echo(visible(text, 0, multiline=True))


def one_line(text: str | None, limit: int = 200) -> str:
    """A table cell or a one-line field: line breaks and controls shown (``␊``), capped."""
    return visible(text, limit) if text else ""


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], flex: int = 0) -> str:
    """A plain table no wider than 80 columns; the ``flex`` column is truncated to fit."""
    rows = [[visible(c, 0) for c in r] for r in rows]  # widths of what is shown
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    gap = 2
    total = sum(widths) + gap * (len(widths) - 1)
    if total > TABLE_WIDTH:
        widths[flex] = max(4, widths[flex] - (total - TABLE_WIDTH))

    def cell(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append((" " * gap).join(cells).rstrip())
    return "\n".join(lines)


# ------------------------------------------------------------------------------ JSON schemas


def queue_json(summary: inspect.QueueSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "paused": summary.paused,
        "counts": {str(s): summary.count(s) for s in inspect.COUNTED_STATES},
        "processed_last_minute": summary.processed_per_min,
        "failed_last_minute": summary.failed_per_min,
        "head_age_s": summary.head_age_s,
    }


def task_brief_json(task: TaskInfo) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "state": str(task.state),
        "attempts": task.attempts,
        "priority": task.priority,
        "enqueued_at_ms": task.enqueued_at_ms,
        "last_error": task.last_error,
    }


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
    }


# ------------------------------------------------------------------------------ root


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rediq")
    except PackageNotFoundError:
        return "0.1.0 (source checkout)"


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--redis-url",
    metavar="URL",
    help="Redis URL (default: $REDIS_URL, .env, config file, else the embedded Valkey server).",
)
@click.option("--prefix", metavar="PREFIX", help="Key prefix (default: $REDIQ_PREFIX or 'rediq').")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="Warnings as text lines or one JSON object per line.",
)
@click.version_option(version=package_version(), message="rediq %(version)s")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, prefix: str | None, log_format: LogFormat) -> None:
    """Operate a rediq installation: queues, tasks, workers, the embedded server."""
    configure_logging("warning", log_format)
    state = ctx.ensure_object(CliState)
    state.redis_url = redis_url
    state.prefix = prefix
    ctx.call_on_close(state.close)


# ------------------------------------------------------------------------------ queue


@cli.group()
def queue() -> None:
    """List, inspect, pause, resume and flush queues."""


@queue.command("list")
@json_option
@pass_state
def queue_list(state: CliState, as_json: bool) -> None:
    """Every known queue with its task counts."""
    summaries = state.client().call(inspect.queues)
    if as_json:
        emit_json([queue_json(s) for s in summaries])
        return
    if not summaries:
        echo("no queues yet (a queue exists once a task was enqueued to it)")
        return
    headers = ["QUEUE", "PEND", "ACTIVE", "SCHED", "RETRY", "WAIT", "DEAD", "DONE/M", "HEAD", "PAUSED"]
    rows = [
        [
            s.name,
            *(
                fmt_count(s.count(st))
                for st in ("pending", "active", "scheduled", "retry", "waiting", "dead")
            ),
            fmt_count(s.processed_per_min),
            fmt_age(s.head_age_s),
            "yes" if s.paused else "",
        ]
        for s in summaries
    ]
    echo(render_table(headers, rows))


def require_queue(state: CliState, name: str) -> inspect.QueueSummary:
    from engine.errors import UnknownQueue

    summary = state.client().call(inspect.queue, name)
    if summary is None:
        raise UnknownQueue(f"queue {name!r} does not exist")
    return summary


@queue.command("inspect")
@click.argument("name", shell_complete=complete_queue)
@click.option("--sample", default=5, show_default=True, type=click.IntRange(0, 100), help="Tasks per state.")
@json_option
@pass_state
def queue_inspect(state: CliState, name: str, sample: int, as_json: bool) -> None:
    """Counts per state, paused, throughput, head age and a sample of tasks."""
    summary = require_queue(state, name)
    client = state.client()
    samples: dict[str, list[TaskInfo]] = {}
    for st in SAMPLE_STATES:
        samples[st] = client.call(inspect.page, name, st, 0, sample).tasks if sample else []
    if as_json:
        out = queue_json(summary)
        out["sample"] = {st: [task_brief_json(t) for t in tasks] for st, tasks in samples.items()}
        emit_json(out)
        return
    echo(f"queue       {summary.name}{'  (PAUSED)' if summary.paused else ''}")
    echo(
        f"throughput  {summary.processed_per_min} completed, "
        f"{summary.failed_per_min} failed in the last minute"
    )
    echo(f"head age    {fmt_age(summary.head_age_s)}")
    counts = [f"{st}={summary.count(st)}" for st in inspect.COUNTED_STATES]
    for i in range(0, len(counts), 4):
        echo(f"{'counts' if i == 0 else '':<11} {'  '.join(counts[i : i + 4])}")
    rows = [
        [t.id, one_line(t.type, 18), str(t.state), str(t.attempts), one_line(t.last_error)]
        for st in SAMPLE_STATES
        for t in samples[st]
    ]
    if rows:
        echo("")
        echo(render_table(["ID", "TYPE", "STATE", "ATT", "ERROR"], rows, flex=4))


@queue.command("pause")
@click.argument("name", shell_complete=complete_queue)
@json_option
@pass_state
def queue_pause(state: CliState, name: str, as_json: bool) -> None:
    """Stop workers from taking new tasks from NAME."""
    changed = state.client().call(admin.pause, name)
    if as_json:
        emit_json({"queue": name, "paused": True, "changed": changed})
    else:
        echo(f"queue {name} paused" if changed else f"queue {name} was already paused")


@queue.command("resume")
@click.argument("name", shell_complete=complete_queue)
@json_option
@pass_state
def queue_resume(state: CliState, name: str, as_json: bool) -> None:
    """Let workers take tasks from NAME again."""
    changed = state.client().call(admin.resume, name)
    if as_json:
        emit_json({"queue": name, "paused": False, "changed": changed})
    else:
        echo(f"queue {name} resumed" if changed else f"queue {name} was not paused")


def parse_state_target(value: str) -> tuple[str, str]:
    state_name, colon, queue_name = value.partition(":")
    if not colon or not queue_name:
        raise click.BadParameter(f"expected STATE:QUEUE such as dead:payment, got {value!r}")
    if state_name not in FLUSHABLE_STATES:
        raise click.BadParameter(
            f"only {', '.join(FLUSHABLE_STATES)} tasks can be flushed, got {state_name!r}"
        )
    return state_name, queue_name


@queue.command("flush")
@click.argument("target", metavar="STATE:QUEUE")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def queue_flush(state: CliState, target: str, yes: bool, as_json: bool) -> None:
    """Delete every task of a finished state, e.g. ``rediq queue flush dead:payment``."""
    state_name, name = parse_state_target(target)
    require_queue(state, name)
    client = state.client()
    count = client.call(admin.count, name, state_name)
    keep = fmt_age(client.settings.quarantine_s)
    if not yes:
        click.confirm(
            visible(f"Delete {count} {state_name} task(s) of queue {name}? (restorable for {keep})", 0),
            abort=True,
            err=True,
        )
    flushed = client.call(admin.flush, name, state_name)
    if as_json:
        emit_json({"queue": name, "state": state_name, "flushed": flushed})
    else:
        echo(
            f"deleted {flushed} {state_name} task(s) from queue {name}; "
            f"`rediq queue restore {name} --all` brings them back within {keep}"
        )


@queue.command("restore")
@click.argument("name", shell_complete=complete_queue)
@click.argument("task_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "restore_all", is_flag=True, help="Restore every quarantined task of the queue.")
@json_option
@pass_state
def queue_restore(
    state: CliState, name: str, task_ids: tuple[str, ...], restore_all: bool, as_json: bool
) -> None:
    """Bring deleted (quarantined) tasks of NAME back to the state they were deleted from."""
    if bool(task_ids) == restore_all:
        raise click.UsageError("give task ids or --all (not both)")
    require_queue(state, name)
    client = state.client()
    restored = 0
    refused: dict[str, str] = {}
    if restore_all:
        while True:  # refused tasks stay quarantined: page past them
            page = client.call(inspect.page, name, TaskState.QUARANTINED, len(refused), admin.CHUNK)
            ids = [t.id for t in page.tasks]
            if not ids:
                break
            done = client.call(admin.restore, name, ids)
            restored += len(done)
            refused.update(done.refused)
            if not done and not done.refused:
                break
    else:
        done = client.call(admin.restore, name, list(task_ids))
        restored, refused = len(done), done.refused
    if as_json:
        emit_json({"queue": name, "restored": restored, "refused": refused})
    else:
        echo(f"restored {restored} task(s) of queue {name}" + refusal_line(refused))


def refusal_line(refused: dict[str, str]) -> str:
    """'; refused 2: ID (reason), ...' on the same line, or '' when nothing was refused."""
    if not refused:
        return ""
    shown = ", ".join(f"{i} ({why})" for i, why in list(refused.items())[:3])
    more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
    return f"; refused {len(refused)}: {shown}{more}"


# ------------------------------------------------------------------------------ worker


class WorkerGroup(click.Group):
    """``rediq worker --app …`` (options right after ``worker``) is shorthand for
    ``rediq worker run --app …``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=WorkerGroup)
def worker() -> None:
    """List workers, or run one (same as rediq-worker; `rediq worker --app …` = `worker run`)."""


@worker.command("list")
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
    echo(render_table(["WORKER", "QUEUES", "BUSY", "OVERDUE", "BEAT", "UP", "STATUS", "FENCED"], rows))


# ------------------------------------------------------------------------------ task


@cli.group()
def task() -> None:
    """Inspect, cancel or retry one task; list the declared task types."""


def require_task(state: CliState, task_id: str) -> TaskInfo:
    from engine.errors import TaskNotFound

    info = state.client().call(inspect.task, task_id)
    if info is None:
        raise TaskNotFound(f"no task with id {task_id!r}")
    return info


@task.command("inspect")
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


@task.command("logs")
@click.argument("task_id", metavar="ID")
@json_option
@pass_state
def task_logs(state: CliState, task_id: str, as_json: bool) -> None:
    """The lines a task's handler logged (ctx.log), oldest first; the last 100 are kept."""
    from engine import tasklog

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


@task.command("types")
@json_option
@pass_state
def task_types(state: CliState, as_json: bool) -> None:
    """Task types the running apps declare (queue, priority 0..100 with 0 first, retries,
    timeout) and the live workers that serve each. Workers publish them when they start."""
    from engine.declarations import list_types

    client = state.client()
    types = client.run(list_types(client.settings.keyspace))
    if as_json:
        emit_json([type_json(t) for t in types])
        return
    if not types:
        click.echo(
            "no task types declared: start a worker (rediq-worker --app ...) to publish its registry's"
        )
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
    click.echo(
        render_table(["TYPE", "QUEUE", "PRI", "RETRY", "TIMEOUT", "UNIQUE", "SERVED BY"], rows, flex=6)
    )
    click.echo("PRI: 0..100, 0 runs first")


@task.command("forget")
@click.argument("task_types", metavar="TYPE...", nargs=-1, required=True)
@json_option
@pass_state
def task_forget(state: CliState, task_types: tuple[str, ...], as_json: bool) -> None:
    """Drop the published declarations of types no app has any more (producers without a
    registry then treat them as undeclared); a worker that has one publishes it again at start."""
    from engine.declarations import forget

    client = state.client()
    removed = client.run(forget(client.settings.keyspace, list(task_types)))
    if as_json:
        emit_json({"forgotten": removed})
    else:
        click.echo(f"{removed} declaration(s) forgotten")


@task.command("why")
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


@task.command("cancel")
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


@task.command("retry")
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


# ------------------------------------------------------------------------------ cron


@cli.group()
def cron() -> None:
    """List, pause, resume or remove cron entries (declared in code with ``registry.cron``)."""


@cron.command("list")
@json_option
@pass_state
def cron_list(state: CliState, as_json: bool) -> None:
    """Cron entries, their next fire, last run and status (paused, orphaned)."""
    entries = state.client().call(inspect.cron_entries)
    if as_json:
        echo(inspect.dump_json(entries))
        return
    if not entries:
        echo("no cron entries")
        return
    rows = [
        [
            e.name,
            e.expression + ("" if e.timezone == "UTC" else f" {e.timezone}"),
            e.task_type,
            fmt_ms(e.next_fire_ms),
            f"{e.last_state or '-'}",
            "orphaned" if e.orphaned else "paused" if e.paused else "active",
        ]
        for e in entries
    ]
    echo(render_table(["NAME", "SCHEDULE", "TYPE", "NEXT", "LAST", "STATUS"], rows))
    if any(e.orphaned for e in entries):
        echo("orphaned: declared by no live worker for longer than its interval; `rediq cron remove NAME`")


def _cron_name(state: CliState, name: str) -> None:
    names = [e.name for e in state.client().call(inspect.cron_entries)]
    if name not in names:
        raise InvalidCron(f"no cron entry named {name!r}", fix="List entries with `rediq cron list`")


@cron.command("pause")
@click.argument("name")
@pass_state
def cron_pause(state: CliState, name: str) -> None:
    """Stop NAME firing until resumed."""
    _cron_name(state, name)
    state.client().call(admin.set_cron_paused, name, True)
    echo(f"cron entry {name} paused")


@cron.command("resume")
@click.argument("name")
@pass_state
def cron_resume(state: CliState, name: str) -> None:
    """Let a paused NAME fire again (from its next tick; missed ticks are not fired)."""
    _cron_name(state, name)
    state.client().call(admin.set_cron_paused, name, False)
    echo(f"cron entry {name} resumed")


@cron.command("remove")
@click.argument("name")
@pass_state
def cron_remove(state: CliState, name: str) -> None:
    """Delete NAME (a worker whose code still declares it stores it again)."""
    _cron_name(state, name)
    state.client().call(admin.remove_cron, name)
    echo(f"cron entry {name} removed")


# ------------------------------------------------------------------------------ dead


@cli.group()
def dead() -> None:
    """Act on dead tasks."""


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``30m``/``2h``/``1d`` ago, or an ISO 8601 time (UTC when no offset is given)."""
    now = now or datetime.now(UTC)
    match = DURATION.match(value)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * UNIT_S[match.group(2)])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (30s, 15m, 2h, 1d, 1w) nor an ISO time (2026-01-31T12:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dead.command("requeue")
@click.argument("name", shell_complete=complete_queue)
@click.option("--all", "requeue_all", is_flag=True, help="Requeue every dead task of the queue.")
@click.option("--type", "task_type", metavar="TYPE", help="Only tasks of this type.")
@click.option("--since", metavar="DURATION|ISO", help="Only tasks that died since then (15m, 2h, ISO time).")
@json_option
@pass_state
def dead_requeue(
    state: CliState, name: str, requeue_all: bool, task_type: str | None, since: str | None, as_json: bool
) -> None:
    """Put dead tasks of queue NAME back to pending."""
    if not (requeue_all or task_type or since):
        raise click.UsageError("say which dead tasks: --all, --type TYPE and/or --since DURATION")
    if requeue_all and (task_type or since):
        raise click.UsageError("--all cannot be combined with --type or --since")
    cutoff_ms = int(parse_since(since).timestamp() * 1000) if since else None

    def chosen(t: TaskInfo) -> bool:
        if task_type is not None and t.type != task_type:
            return False
        return cutoff_ms is None or (t.finished_at_ms or t.enqueued_at_ms) >= cutoff_ms

    where = None if requeue_all else chosen
    refused: dict[str, str] = {}
    count = state.client().call(admin.requeue_all, name, TaskState.DEAD, where, refused)
    if as_json:
        emit_json({"queue": name, "requeued": count, "refused": refused})
    else:
        echo(f"requeued {count} dead task(s) of queue {name}" + refusal_line(refused))


# ------------------------------------------------------------------------------ doctor, audit


@cli.command("doctor")
@click.option("--repair", is_flag=True, help="Fix what is found (every repair is idempotent).")
@json_option
@pass_state
def doctor_command(state: CliState, repair: bool, as_json: bool) -> None:
    """Find state no normal transition leaves behind (and fix it with --repair)."""
    findings = state.client().call(doctor.examine, repair)
    findings += doctor.examine_library(state.client().backend, repair)
    if as_json:
        emit_json(
            {
                "repair": repair,
                "findings": [
                    {
                        "kind": f.kind,
                        "queue": f.queue,
                        "item": f.item,
                        "detail": f.detail,
                        "repaired": f.repaired,
                    }
                    for f in findings
                ],
            }
        )
        return
    if not findings:
        echo("no problems found")
        return
    rows = [
        [f.kind, f.queue or "-", one_line(f.item, 34), "yes" if f.repaired else "no", f.detail]
        for f in findings
    ]
    echo(render_table(["PROBLEM", "QUEUE", "ITEM", "FIXED", "DETAIL"], rows, flex=4))
    if not repair:
        echo(f"\n{len(findings)} problem(s); run `rediq doctor --repair` to fix them")


@cli.command("audit")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@pass_state
def audit_command(state: CliState, limit: int, as_json: bool) -> None:
    """The latest operator actions (pause, requeue, delete…), newest first."""
    entries = state.client().call(inspect.audit, limit)
    if as_json:
        emit_json(
            [
                {
                    "at_ms": e.at_ms,
                    "action": e.action,
                    "queue": e.queue,
                    "count": e.count,
                    "detail": e.detail,
                    "actor": e.actor,
                }
                for e in entries
            ]
        )
        return
    if not entries:
        echo("no operator actions recorded")
        return
    rows = [[fmt_ms(e.at_ms)[:19], e.action, e.queue or "-", str(e.count), e.actor] for e in entries]
    echo(render_table(["AT (UTC)", "ACTION", "QUEUE", "COUNT", "ACTOR"], rows, flex=4))


# ------------------------------------------------------------------------------ dash


@cli.command()
@click.option(
    "--interval", default=2000, show_default=True, type=click.IntRange(100, 60_000), help="Refresh in ms."
)
@click.option("--read-only", is_flag=True, help="Disable every console action that writes.")
@click.option("--no-mouse", is_flag=True, help="Keyboard only.")
@pass_state
def dash(state: CliState, interval: int, read_only: bool, no_mouse: bool) -> None:
    """Open the terminal console (python -m rediq_tui) on the same Redis."""
    url = state.url()
    try:
        has_console = find_spec("rediq_tui.__main__") is not None
    except (ImportError, ValueError):
        has_console = False
    if not has_console:
        raise ConsoleMissing("the console package rediq_tui is not installed")
    # the URL (it may hold a password) goes in the environment: argv is readable by every local user
    env = {**os.environ, "REDIS_URL": url, "REDIQ_PREFIX": state.config().rediq_prefix}
    args = [sys.executable, "-m", "rediq_tui", "--interval", str(interval)]
    args += ["--read-only"] if read_only else []
    args += ["--no-mouse"] if no_mouse else []
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.executable, args, env)


# ------------------------------------------------------------------------------ config


@cli.group()
def config() -> None:
    """Show the effective configuration."""


@config.command("show")
@json_option
@pass_state
def config_show(state: CliState, as_json: bool) -> None:
    """Every setting with its value and source (flag, env, .env, file, default)."""
    effective = state.config()
    sources = config_sources(state.flags())
    values = effective.display_values()
    if as_json:
        emit_json(
            {
                "config_file": str(config_file_path()),
                "settings": {k: {"value": values[k], "source": sources[k]} for k in values},
            }
        )
        return
    rows = [
        [k, "" if v is None else json.dumps(v) if not isinstance(v, str) else v, sources[k]]
        for k, v in values.items()
    ]
    echo(render_table(["SETTING", "VALUE", "SOURCE"], rows, flex=1))
    echo(f"\nconfig file: {config_file_path()}")
    if not effective.redis_url:
        echo("redis_url unset: the embedded Valkey server is used (`rediq server status`)")


# ------------------------------------------------------------------------------ server


@cli.group()
def server() -> None:
    """The embedded Valkey server used when no Redis URL is configured."""


def server_json(status: embedded.ServerStatus) -> dict[str, Any]:
    return {
        "running": status.running,
        "pid": status.pid,
        "url": status.url,
        "data_dir": status.data_dir,
        "aof": status.aof,
    }


@server.command("status")
@json_option
def server_status(as_json: bool) -> None:
    """Whether the embedded server runs, its pid, URL and data directory."""
    status = embedded.status()
    if as_json:
        emit_json(server_json(status))
        return
    if status.running:
        echo(f"running     pid {status.pid} at {status.url}")
    else:
        echo("stopped")
    echo(f"data dir    {status.data_dir}")
    echo(f"persisted   {'yes (AOF)' if status.aof else 'no data yet'}")


@server.command("start")
@json_option
def server_start(as_json: bool) -> None:
    """Start the embedded server (or report the running one)."""
    url = embedded.ensure_server()
    status = embedded.status()
    if as_json:
        emit_json(server_json(status))
    else:
        echo(f"running     pid {status.pid} at {url}")


@server.command("stop")
@json_option
def server_stop(as_json: bool) -> None:
    """Stop the embedded server; its data stays in the data directory."""
    pid = embedded.stop_server()
    if as_json:
        emit_json({"stopped": pid is not None, "pid": pid})
    elif pid is None:
        echo("embedded server was not running")
    else:
        echo(f"stopped embedded server (pid {pid})")


@server.command("install-functions")
@click.option("--check", is_flag=True, help="Only report where the library is missing (exit 1 if anywhere).")
@click.option(
    "--prune", is_flag=True, help="Also delete other versions' libraries (once their workers are gone)."
)
@json_option
@pass_state
def server_install_functions(state: CliState, check: bool, prune: bool, as_json: bool) -> int:
    """Load this version's Lua function library on every primary (needs FUNCTION LOAD).

    Run it once per rediq version as an admin user: workers under docs/acl/worker.acl may
    call the functions (FCALL) but not load them."""
    backend = state.client().backend
    statuses = backend.library_status() if check else backend.install_functions()
    pruned = backend.prune_functions() if prune and not check else []
    library = lua.library().name
    if as_json:
        nodes = [{"node": s.node, "present": s.present, "loaded": s.loaded} for s in statuses]
        deleted = [{"node": node, "library": name} for node, name in pruned]
        emit_json({"library": library, "nodes": nodes, "deleted": deleted})
    else:
        for s in statuses:
            what = "loaded" if s.loaded else "present" if s.present else "MISSING"
            echo(f"{library} {what} on {s.node}")
        for node, name in pruned:
            echo(f"{name} deleted on {node}")
    return 0 if all(s.present for s in statuses) else 1


# ------------------------------------------------------------------------------ worker run


@click.command("run", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--app", required=True, metavar="MODULE:REGISTRY", help="The task registry, e.g. myapp.tasks:registry."
)
@click.option(
    "--queues", metavar="A,B", help="Queues in priority order (default: $WORKER_QUEUES or the app's)."
)
@click.option("--concurrency", type=int, help="Handler slots (default: $WORKER_CONCURRENCY or 10).")
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
        worker_lease_s=lease_s,
        worker_grace_s=grace_s,
        worker_pool=pool,
        worker_unknown_type_timeout_s=unknown_type_timeout_s,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    ctx.exit(run_worker_process(app, config, parse_weights(weights), handler, chosen, burst=burst))


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
) -> int:
    from engine.registry import load_app

    try:
        from engine.worker import Worker, WorkerOptions
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
    if log_handler is not None:
        log_handler.addFilter(WorkerField(worker.id))
    if log_format == "json":
        worker.add_listener(log_outcome)
    metrics_server = None
    reader: Client | None = None
    if config.metrics_on:
        from engine.metrics import LabelPolicy, MetricsServer, WorkerMetrics, WorkerStateCollector

        reader = Client(target, settings=settings)
        labels = LabelPolicy(registry.types, set(queues) | set(registry.queues))
        reader_client = reader
        metrics = WorkerMetrics(
            labels,
            lambda: reader_client.call(inspect.queues),
            lambda: float(worker.in_flight),
            served_queues=queues,
            worker_state=WorkerStateCollector(lambda: worker.overdue_slots, lambda: worker.loop_errors),
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


worker.add_command(worker_run)


# ------------------------------------------------------------------------------ entry points


def one_line_usage(exc: click.UsageError) -> str:
    message = " ".join(exc.format_message().split())
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return f"usage error: {message}{hint}"


_LINE_BREAKS = re.compile(r"[ \t\r\n]+")


def _error_line(text: str) -> None:
    """One stderr line; error texts quote Redis data (ids, names, server replies), so every
    control in them is shown visibly."""
    click.echo(visible(_LINE_BREAKS.sub(" ", text).strip(), 0), err=True)


def run(command: click.Command, args: Sequence[str] | None, prog_name: str) -> int:
    """Run a click command; every failure becomes one stderr line and a distinct exit code."""
    import redis

    debug = bool(os.environ.get("REDIQ_DEBUG"))
    try:
        result = command.main(
            args=list(args) if args is not None else None, prog_name=prog_name, standalone_mode=False
        )
        return result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as exc:
        echo(exc.format_message())
        return 0
    except click.UsageError as exc:
        _error_line(one_line_usage(exc))
        return EXIT_USAGE
    except click.Abort:
        _error_line("aborted: nothing was changed")
        return EXIT_ABORTED
    except click.ClickException as exc:
        _error_line(f"error: {exc.format_message()}")
        return exc.exit_code if exc.exit_code not in (0, 1) else EXIT_INVALID
    except RediqError as exc:
        _error_line(str(exc))
        return exc.exit_code
    except ValidationError as exc:
        _error_line(f"invalid value: {validation_message(exc)}")
        return EXIT_INVALID
    except redis.RedisError as exc:
        _error_line(f"redis error: {mask_url(str(exc))}")
        return EXIT_REDIS
    except KeyboardInterrupt:
        _error_line("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if debug:
            raise
        _error_line(f"internal error: {type(exc).__name__}: {exc} (set REDIQ_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


def main(args: Sequence[str] | None = None) -> None:
    """``rediq``."""
    sys.exit(run(cli, args, "rediq"))


def worker_main(args: Sequence[str] | None = None) -> None:
    """``rediq-worker`` (same options as ``rediq worker run``)."""
    sys.exit(run(worker_run, args, "rediq-worker"))


if __name__ == "__main__":
    main()
