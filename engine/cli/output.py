"""The CLI's one output layer: every line a command prints goes through here.

Text output quotes Redis data (task types, ids, errors, queue and worker names), so every
control in it is shown visibly (``engine.display``); ``--json`` output passes unchanged, as the
encoder already escapes every control. Errors are one stderr line each (``error_line``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from engine.display import visible

TABLE_WIDTH = 80

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": TABLE_WIDTH}


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (schema: docs/operations.md).")(
        fn
    )


def emit_json(value: Any) -> None:
    echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def echo(text: object = "") -> None:
    """Every line the CLI prints (see the module's docstring)."""
    click.echo(visible(text, 0, multiline=True))


def one_line(text: str | None, limit: int = 200) -> str:
    """A table cell or a one-line field: line breaks and controls shown (``␊``), capped."""
    return visible(text, limit) if text else ""


_LINE_BREAKS = re.compile(r"[ \t\r\n]+")


def error_line(text: str) -> None:
    """One stderr line; error texts quote Redis data (ids, names, server replies), so every
    control in them is shown visibly."""
    click.echo(visible(_LINE_BREAKS.sub(" ", text).strip(), 0), err=True)


def one_line_usage(exc: click.UsageError) -> str:
    message = " ".join(exc.format_message().split())
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return f"usage error: {message}{hint}"


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


def refusal_line(refused: dict[str, str]) -> str:
    """'; refused 2: ID (reason), ...' on the same line, or '' when nothing was refused."""
    if not refused:
        return ""
    shown = ", ".join(f"{i} ({why})" for i, why in list(refused.items())[:3])
    more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
    return f"; refused {len(refused)}: {shown}{more}"
