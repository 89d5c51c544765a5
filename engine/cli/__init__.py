"""``rediq`` (operator CLI) and ``rediq-worker`` (worker process).

Every failure is one line on stderr and a distinct exit code, never a traceback: engine
errors print as ``E00X: message. fix`` (see ``engine.errors`` and docs/operations.md).
Read commands take ``--json`` with a stable, documented schema.

Shell completion (click's own): ``eval "$(_REDIQ_COMPLETE=bash_source rediq)"`` in
``~/.bashrc``, ``eval "$(_REDIQ_COMPLETE=zsh_source rediq)"`` in ``~/.zshrc``.

Layout (as rq and Celery lay theirs out): this module holds the root group and the entry
points; ``output`` the one output layer (text, ``--json``, the sanitiser, error lines);
``state`` the per-invocation config and client; one module per command group (``queues``,
``tasks``, ``workers`` and ``worker_run``, ``dead``, ``cron``, ``server``, ``config``,
``doctor``, ``dash``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click
from pydantic import ValidationError

from engine.cli.config import config_group
from engine.cli.cron import cron_group
from engine.cli.dash import dash_command
from engine.cli.dead import dead_group
from engine.cli.doctor import audit_command, doctor_command
from engine.cli.output import CONTEXT_SETTINGS, echo, error_line, one_line_usage
from engine.cli.queues import queue_group
from engine.cli.server import server_group
from engine.cli.state import CliState
from engine.cli.tasks import task_group
from engine.cli.worker_run import worker_run
from engine.cli.workers import worker_group
from engine.client import validation_message
from engine.connection import RedisError, mask_url
from engine.errors import RediqError
from engine.logs import LOG_FORMATS, LogFormat
from engine.logs import configure as configure_logging

__all__ = ["EXIT_INTERNAL", "cli", "main", "run", "worker_main"]

# Exit codes besides the engine's (RediqError.exit_code, 2..9): documented in docs/operations.md.
EXIT_ABORTED = 1
EXIT_USAGE = 64
EXIT_REDIS = 10
EXIT_INVALID = 11
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


def package_version() -> str:
    # start-up time: read only by --version
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


for _command in (
    queue_group,
    worker_group,
    task_group,
    cron_group,
    dead_group,
    doctor_command,
    audit_command,
    dash_command,
    config_group,
    server_group,
):
    cli.add_command(_command)


def run(command: click.Command, args: Sequence[str] | None, prog_name: str) -> int:
    """Run a click command; every failure becomes one stderr line and a distinct exit code."""
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
        error_line(one_line_usage(exc))
        return EXIT_USAGE
    except click.Abort:
        error_line("aborted: nothing was changed")
        return EXIT_ABORTED
    except click.ClickException as exc:
        error_line(f"error: {exc.format_message()}")
        return exc.exit_code if exc.exit_code not in (0, 1) else EXIT_INVALID
    except RediqError as exc:
        error_line(str(exc))
        return exc.exit_code
    except ValidationError as exc:
        error_line(f"invalid value: {validation_message(exc)}")
        return EXIT_INVALID
    except RedisError as exc:
        error_line(f"redis error: {mask_url(str(exc))}")
        return EXIT_REDIS
    except KeyboardInterrupt:
        error_line("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if debug:
            raise
        error_line(f"internal error: {type(exc).__name__}: {exc} (set REDIQ_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


def main(args: Sequence[str] | None = None) -> None:
    """``rediq``."""
    sys.exit(run(cli, args, "rediq"))


def worker_main(args: Sequence[str] | None = None) -> None:
    """``rediq-worker`` (same options as ``rediq worker run``)."""
    sys.exit(run(worker_run, args, "rediq-worker"))
