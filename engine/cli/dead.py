"""``rediq dead …``: act on dead tasks in bulk."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from engine import admin
from engine.cli.output import echo, emit_json, json_option, refusal_line
from engine.cli.state import CliState, complete_queue, pass_state
from engine.task import TaskInfo, TaskState


@click.group("dead")
def dead_group() -> None:
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


@dead_group.command("requeue")
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
