"""``rediq cron …``: list, pause, resume or remove cron entries."""

from __future__ import annotations

import click

from engine import admin, inspect
from engine.cli.output import echo, fmt_ms, json_option, render_table
from engine.cli.state import CliState, pass_state
from engine.errors import InvalidCron


@click.group("cron")
def cron_group() -> None:
    """List, pause, resume or remove cron entries (declared in code with ``registry.cron``)."""


@cron_group.command("list")
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


@cron_group.command("pause")
@click.argument("name")
@pass_state
def cron_pause(state: CliState, name: str) -> None:
    """Stop NAME firing until resumed."""
    _cron_name(state, name)
    state.client().call(admin.set_cron_paused, name, True)
    echo(f"cron entry {name} paused")


@cron_group.command("resume")
@click.argument("name")
@pass_state
def cron_resume(state: CliState, name: str) -> None:
    """Let a paused NAME fire again (from its next tick; missed ticks are not fired)."""
    _cron_name(state, name)
    state.client().call(admin.set_cron_paused, name, False)
    echo(f"cron entry {name} resumed")


@cron_group.command("remove")
@click.argument("name")
@pass_state
def cron_remove(state: CliState, name: str) -> None:
    """Delete NAME (a worker whose code still declares it stores it again)."""
    _cron_name(state, name)
    state.client().call(admin.remove_cron, name)
    echo(f"cron entry {name} removed")
