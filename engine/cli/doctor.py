"""``rediq doctor`` (consistency checks and repairs) and ``rediq audit`` (operator actions)."""

from __future__ import annotations

import click

from engine import doctor, inspect
from engine.cli.output import echo, emit_json, fmt_ms, json_option, one_line, render_table
from engine.cli.state import CliState, pass_state


@click.command("doctor")
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


@click.command("audit")
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
