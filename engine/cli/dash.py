"""``rediq dash``: the terminal console on the same Redis."""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec

import click

from engine.cli.state import CliState, pass_state
from engine.errors import ConsoleMissing


@click.command("dash")
@click.option(
    "--interval", default=2000, show_default=True, type=click.IntRange(100, 60_000), help="Refresh in ms."
)
@click.option("--read-only", is_flag=True, help="Disable every console action that writes.")
@click.option("--no-mouse", is_flag=True, help="Keyboard only.")
@pass_state
def dash_command(state: CliState, interval: int, read_only: bool, no_mouse: bool) -> None:
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
