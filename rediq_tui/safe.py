"""Sanitising of every string that comes from Redis before it reaches the screen.

Everything read from Redis is hostile: task types, ids, payloads, errors, tracebacks, worker
host names and queue names may hold Rich markup (``[@click=app.quit]``), terminal escape
sequences (CSI/OSC/DCS), C0/C1 controls, bidi overrides or invalid UTF-8. ``clean`` turns any
value into plain, printable text of bounded length; ``text`` wraps it in a ``rich.text.Text``
(never parsed as markup) and ``markup`` escapes it for places that do parse markup.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.markup import escape
from rich.text import Text

DEFAULT_LIMIT = 200
PREVIEW_LIMIT = 80
DETAIL_LIMIT = 20_000
ELLIPSIS = "…"

# Escape sequences first (so their parameters do not survive as text), then single controls.
_SEQUENCES = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]?              # CSI ... final byte
  | \x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?   # OSC ... BEL/ST
  | \x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?         # DCS/SOS/PM/APC ... ST
  | \x1b[ -/]*[0-~]?                     # other ESC sequences (nF, Fp, Fe, Fs)
  | \x9b[0-?]*[ -/]*[@-~]?               # 8-bit CSI
  | [\x90\x98\x9d\x9e\x9f][^\x07\x9c]*(?:\x07|\x9c)?  # 8-bit DCS/SOS/OSC/PM/APC
    """,
    re.VERBOSE,
)
# C0 except \t and \n, DEL, C1, bidi embeddings/overrides/isolates and marks, BOM, line/para
# separators (they break rows), and lone surrogates.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)


def to_str(value: Any) -> str:
    """Any value as a valid-UTF-8 ``str`` (bytes decoded with replacement, surrogates replaced)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8", errors="replace")
    return text


def cap(text: str, limit: int, hidden: int = 0) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was left out (``hidden``: characters
    already dropped before)."""
    if limit <= 0 or (len(text) <= limit and not hidden):
        return text
    if limit < 24:
        return text[: limit - 1] + ELLIPSIS
    keep = min(len(text), limit)
    while True:
        note = f"{ELLIPSIS}(+{len(text) - keep + hidden:,} chars)"
        if keep + len(note) <= limit:
            return text[:keep] + note
        keep = max(1, limit - len(note))


def clean(value: Any, limit: int = DEFAULT_LIMIT, *, multiline: bool = False) -> str:
    """Printable, bounded text. Single-line mode (tables) turns newlines and tabs into spaces."""
    text = to_str(value)
    hidden = 0
    window = limit * 4 + 64
    if limit > 0 and len(text) > window:  # a 1 MB payload is not scanned in full
        hidden = len(text) - window
        text = text[:window]
    text = _SEQUENCES.sub("", text)
    text = _CONTROLS.sub("", text)
    if multiline:
        text = text.replace("\t", "    ")
    else:
        text = text.replace("\n", " ").replace("\t", " ")
    return cap(text, limit, hidden)


def markup(value: Any, limit: int = DEFAULT_LIMIT, *, multiline: bool = False) -> str:
    """Cleaned text escaped for Rich/Textual markup (``[`` can no longer open a tag)."""
    return escape(clean(value, limit, multiline=multiline))


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
