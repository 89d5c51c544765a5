"""``rediq queue …``: list, inspect, pause, resume, limit, flush and restore queues."""

from __future__ import annotations

from typing import Any

import click

from engine import admin, batching, flow, inspect, ops
from engine.cli.output import (
    echo,
    emit_json,
    fmt_age,
    fmt_count,
    json_option,
    one_line,
    refusal_line,
    render_table,
)
from engine.cli.state import CliState, complete_queue, pass_state
from engine.display import visible
from engine.errors import UnknownQueue
from engine.task import TaskInfo

SAMPLE_STATES = ("pending", "active", "retry", "dead")
FLUSHABLE_STATES = ("dead", "completed", "cancelled", "expired")


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


@click.group("queue")
def queue_group() -> None:
    """List, inspect, pause, resume and flush queues."""


@queue_group.command("list")
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
    summary = state.client().call(inspect.queue, name)
    if summary is None:
        raise UnknownQueue(f"queue {name!r} does not exist")
    return summary


@queue_group.command("inspect")
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
    batches = client.call(batching.read_batches, name)
    now = client.run(ops.server_time_ms()) if batches else 0
    forming = [client.call(batching.read_batch_state, name, t, None, now) for t in sorted(batches)]
    if as_json:
        out = queue_json(summary)
        out["sample"] = {st: [task_brief_json(t) for t in tasks] for st, tasks in samples.items()}
        out["batches"] = {
            b.task_type: {"max_size": b.batch.max_size, "max_delay": b.batch.max_delay, "waiting": b.waiting}
            for b in forming
            if b is not None
        }
        emit_json(out)
        return
    echo(f"queue       {summary.name}{'  (PAUSED)' if summary.paused else ''}")
    echo(
        f"throughput  {summary.processed_per_min} completed, "
        f"{summary.failed_per_min} failed in the last minute"
    )
    echo(f"head age    {fmt_age(summary.head_age_s)}")
    for n, b in enumerate(b for b in forming if b is not None):
        # (ungrouped tasks only; `rediq task why ID` names any task's batch)
        line = f"{b} (up to {b.batch.max_size} per call, or after {b.batch.max_delay:g} s)"
        echo(f"{'batches' if n == 0 else '':<11} {one_line(line)}")
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


@queue_group.command("pause")
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


@queue_group.command("resume")
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


@queue_group.command("limit")
@click.argument("name", shell_complete=complete_queue)
@click.argument("limit", required=False)
@click.option("--burst", type=int, default=None, help="Tasks that may start at once (default 1).")
@click.option("--type", "task_type", default=None, help="One task type's own limit in the queue.")
@click.option("--clear", is_flag=True, help="Remove the limit (a declared one returns at a worker's start).")
@json_option
@pass_state
def queue_limit(
    state: CliState,
    name: str,
    limit: str | None,
    burst: int | None,
    task_type: str | None,
    clear: bool,
    as_json: bool,
) -> None:
    """Show or set NAME's fleet-wide rate limit, e.g. ``rediq queue limit payment 50/s --burst 5``.

    LIMIT is N per ms/s/m/h (``50/s``, ``600/m``, ``5/10s``); it holds for every worker on
    every host, takes effect at once, is kept over the app's declared one until ``--clear``,
    and is audited."""
    client = state.client()
    if clear and (limit or burst is not None):
        raise click.UsageError("give a LIMIT or --clear (not both)")
    if clear:
        removed = client.call(admin.clear_rate_limit, name, task_type)
        if as_json:
            emit_json({"queue": name, "limit": None, "changed": removed})
        else:
            echo(f"queue {name}: rate limit removed" if removed else f"queue {name} had no rate limit")
        return
    if limit is not None:
        client.call(admin.set_rate_limit, name, flow.parse_limit(limit, burst), task_type)
    elif burst is not None:
        raise click.UsageError("--burst goes with a LIMIT, e.g. 50/s --burst 5")
    bucket = client.call(flow.read_bucket, name, task_type)
    if as_json:
        emit_json({**bucket_json(name, bucket), "type": task_type})
        return
    echo(f"queue {name}{'' if task_type is None else f', type {task_type}'}: {describe_bucket(bucket)}")


@queue_group.command("group-limit")
@click.argument("name", shell_complete=complete_queue)
@click.argument("limit", type=int, required=False)
@click.option("--group", default=flow.ANY_GROUP, show_default=True, help="The group; * is any group.")
@click.option("--clear", is_flag=True, help="Remove the group's limit.")
@json_option
@pass_state
def queue_group_limit(
    state: CliState, name: str, limit: int | None, group: str, clear: bool, as_json: bool
) -> None:
    """Show or set how many tasks of one concurrency group (``Task.group``) of NAME may run at
    once, fleet-wide, e.g. ``rediq queue group-limit exports 2`` (audited)."""
    client = state.client()
    if clear == (limit is not None) and clear:
        raise click.UsageError("give a LIMIT or --clear (not both)")
    if clear:
        client.call(admin.clear_group_limit, name, group)
    elif limit is not None:
        client.call(admin.set_group_limit, name, group, limit)
    current = client.call(flow.read_group, name, group)
    if as_json:
        emit_json({"queue": name, "group": group, "limit": current.limit, "holding": current.holding})
    elif current.limit is None:
        echo(f"queue {name}, group {group}: no limit")
    else:
        echo(f"queue {name}, group {group}: at most {current.limit} at once ({current.holding} now)")


@queue_group.command("fair")
@click.argument("name", shell_complete=complete_queue)
@click.option("--on", "turn_on", is_flag=True, help="Round-robin between NAME's groups.")
@click.option("--off", is_flag=True, help="Back to FIFO within each priority.")
@click.option("--weight", "weights", multiple=True, help="GROUP=N: the group's share of a round (default 1).")
@json_option
@pass_state
def queue_fair(
    state: CliState, name: str, turn_on: bool, off: bool, weights: tuple[str, ...], as_json: bool
) -> None:
    """Show or set fair scheduling between the groups of NAME, e.g.
    ``rediq queue fair imports --on --weight customer:1=3`` (audited)."""
    client = state.client()
    if turn_on and off:
        raise click.UsageError("give --on or --off (not both)")
    parsed: dict[str, int] = {}
    for w in weights:
        group, _, n = w.rpartition("=")
        if not group or not n.isdigit():
            raise click.UsageError(f"--weight {w!r}: write GROUP=N, e.g. customer:1=3")
        parsed[group] = int(n)
    if off:
        client.call(admin.clear_fair, name)
    elif turn_on or parsed:
        client.call(admin.set_fair, name, parsed)
    current = client.call(flow.read_fair, name)
    if as_json:
        emit_json(
            {
                "queue": name,
                "fair": current.on,
                "weights": current.weights,
                "groups": current.groups_with_backlog,
            }
        )
    elif not current.on:
        echo(f"queue {name}: not fair (FIFO within each priority)")
    else:
        shown = ", ".join(f"{visible(g)}={w}" for g, w in sorted(current.weights.items()))
        weighted = f" (weights {shown})" if shown else ""
        echo(f"queue {name}: fair: {current.groups_with_backlog} groups with backlog{weighted}")


def bucket_json(name: str, bucket: flow.BucketState) -> dict[str, Any]:
    lim = bucket.limit
    return {
        "queue": name,
        "limit": None
        if lim is None
        else {"rate": lim.rate, "period_ms": lim.period_ms, "burst": lim.burst, "text": str(lim)},
        "source": bucket.source.value if bucket.source else None,
        "tokens": bucket.tokens,
        "next_token_ms": bucket.next_token_ms,
        "paused_ms": bucket.paused_ms,
    }


def describe_bucket(bucket: flow.BucketState) -> str:
    paused = f"; paused by a handler's RateLimited for {bucket.paused_ms} ms" if bucket.paused_ms else ""
    if bucket.limit is None:
        return "no rate limit" + paused
    by = f" (set by {bucket.source.value})" if bucket.source else ""
    now = f"{bucket.tokens} token(s) now" if bucket.tokens else f"next token in {bucket.next_token_ms} ms"
    return f"rate limit {bucket.limit}{by}: {now}{paused}"


def parse_state_target(value: str) -> tuple[str, str]:
    state_name, colon, queue_name = value.partition(":")
    if not colon or not queue_name:
        raise click.BadParameter(f"expected STATE:QUEUE such as dead:payment, got {value!r}")
    if state_name not in FLUSHABLE_STATES:
        raise click.BadParameter(
            f"only {', '.join(FLUSHABLE_STATES)} tasks can be flushed, got {state_name!r}"
        )
    return state_name, queue_name


@queue_group.command("flush")
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


@queue_group.command("restore")
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
    refused: dict[str, str] = {}
    if restore_all:
        restored = client.call(admin.restore_all, name, refused)
    else:
        done = client.call(admin.restore, name, list(task_ids))
        restored, refused = len(done), done.refused
    if as_json:
        emit_json({"queue": name, "restored": restored, "refused": refused})
    else:
        echo(f"restored {restored} task(s) of queue {name}" + refusal_line(refused))
