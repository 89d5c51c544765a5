"""``rediq config show``: the effective configuration and where each value comes from."""

from __future__ import annotations

import json

import click

from engine.cli.output import echo, emit_json, json_option, render_table
from engine.cli.state import CliState, pass_state
from engine.config import config_file_path, config_sources


@click.group("config")
def config_group() -> None:
    """Show the effective configuration."""


@config_group.command("show")
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
