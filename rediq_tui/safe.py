"""Sanitising of every string that comes from Redis before it reaches the screen.

Everything read from Redis is hostile: task types, ids, payloads, errors, tracebacks, worker
host names and queue names may hold Rich markup (``[@click=app.quit]``), terminal escape
sequences (CSI/OSC/DCS), C0/C1 controls, bidi overrides or invalid UTF-8. ``clean`` turns any
value into plain, printable text of bounded length in which controls, escape sequences and
invisible characters are shown as placeholders (``␛``, ``⟨U+202E⟩``), never deleted, so two
different names never look alike; ``text`` wraps it in a ``rich.text.Text`` (never parsed as
markup). There is deliberately no markup escaper: Rich's ``escape`` leaves ``\\[`` to render
as ``[`` (a backslash lost), so values never go into markup strings at all.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from engine.display import DEFAULT_LIMIT, ELLIPSIS, cap, to_str, visible

PREVIEW_LIMIT = 80
DETAIL_LIMIT = 20_000


def clean(value: Any, limit: int = DEFAULT_LIMIT, *, multiline: bool = False) -> str:
    """Printable, bounded text with every control shown as a visible placeholder (the engine's
    one sanitiser, ``engine.display.visible``, shared with the CLI and the logs)."""
    return visible(value, limit, multiline=multiline)


def text(value: Any, limit: int = DEFAULT_LIMIT, *, style: str = "", multiline: bool = False) -> Text:
    """Cleaned text as a ``Text`` object, which Rich never parses as markup."""
    return Text(clean(value, limit, multiline=multiline), style=style, no_wrap=not multiline)


def pretty_json(value: Any, limit: int = DETAIL_LIMIT) -> str:
    """Indented JSON of a decoded payload/result (or the raw string when not JSON), cleaned."""
    if isinstance(value, str):
        body = value
    else:
        try:
            body = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
        except (TypeError, ValueError):
            body = repr(value)
    return clean(body, limit, multiline=True)


def preview(value: Any, limit: int = PREVIEW_LIMIT) -> str:
    """One-line compact preview of a payload for table cells."""
    if isinstance(value, str):
        body = value
    else:
        try:
            body = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            body = repr(value)
    return clean(body, limit)


__all__ = [
    "DEFAULT_LIMIT",
    "DETAIL_LIMIT",
    "ELLIPSIS",
    "PREVIEW_LIMIT",
    "cap",
    "clean",
    "preview",
    "pretty_json",
    "text",
    "to_str",
]
