"""``rediq server …``: the embedded Valkey server and the Lua function library."""

from __future__ import annotations

from typing import Any

import click

from engine import embedded, lua
from engine.cli.output import echo, emit_json, json_option
from engine.cli.state import CliState, pass_state


@click.group("server")
def server_group() -> None:
    """The embedded Valkey server used when no Redis URL is configured."""


def server_json(status: embedded.ServerStatus) -> dict[str, Any]:
    return {
        "running": status.running,
        "pid": status.pid,
        "url": status.url,
        "data_dir": status.data_dir,
        "aof": status.aof,
    }


@server_group.command("status")
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


@server_group.command("start")
@json_option
def server_start(as_json: bool) -> None:
    """Start the embedded server (or report the running one)."""
    url = embedded.ensure_server()
    status = embedded.status()
    if as_json:
        emit_json(server_json(status))
    else:
        echo(f"running     pid {status.pid} at {url}")


@server_group.command("stop")
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


@server_group.command("install-functions")
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
