"""Safe display of text that came from Redis: the one sanitiser for the CLI, logs, error
messages and the console.

Everything read from Redis is hostile: task types, ids, payloads, errors, queue and worker
names may hold terminal escape sequences (CSI, OSC titles and links, DCS), C0/C1 controls,
bidi overrides, zero-width and tag characters, or invalid UTF-8. ``visible`` makes any value
printable without deleting anything: each such character becomes a visible placeholder
(``␛`` for ESC, ``␇`` for BEL, ``⟨U+202E⟩`` for a bidi override), so no byte can act on the
terminal and two different names never look alike (``lnk\\x1b[0m`` reads ``lnk␛[0m``, not
``lnk``). JSON output (``--json``) is exact JSON instead: its encoder escapes every control.
"""

from __future__ import annotations

import logging
import re
from typing import Any

DEFAULT_LIMIT = 200
ELLIPSIS = "…"

# Invisible or terminal-active characters: C0 and C1 controls and DEL; format characters
# (soft hyphen, Arabic/Syriac marks, Mongolian vowel separator, zero-width space/joiners, bidi
# marks, embeddings, overrides and isolates, word joiner and invisible operators, BOM,
# interlinear annotation); line and paragraph separators; tag characters; lone surrogates.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
    "\U000e0000-\U000e007f]"
)


def _placeholder(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␀ … ␟ (␛ for ESC)
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"⟨U+{code:04X}⟩"


def to_str(value: Any) -> str:
    """Any value as a ``str`` that encodes to UTF-8 (bytes decoded with U+FFFD for invalid
    sequences; lone surrogates are kept and shown as placeholders by ``visible``)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


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
        if len(note) >= limit:  # a count too long to fit at all
            return text[: limit - 1] + ELLIPSIS
        keep = max(1, limit - len(note))


def visible(value: Any, limit: int = DEFAULT_LIMIT, *, multiline: bool = False) -> str:
    """Printable text of at most ``limit`` characters (0: no limit) in which every control,
    escape and invisible character is shown as a placeholder. ``multiline`` keeps newlines and
    expands tabs (tracebacks, payloads); otherwise they show as ``␤`` and ``␉``."""
    text = to_str(value)
    hidden = 0
    window = limit * 4 + 64
    if limit > 0 and len(text) > window:  # a 1 MB payload is not scanned in full
        hidden = len(text) - window
        text = text[:window]
    if multiline:
        text = text.replace("\t", "    ").replace("\r\n", "\n")
        text = "\n".join(_INVISIBLE.sub(_placeholder, line) for line in text.split("\n"))
    else:
        text = _INVISIBLE.sub(_placeholder, text)
    return cap(text, limit, hidden)


class SafeFormatter(logging.Formatter):
    """A log formatter whose lines show Redis data (task ids, types, errors, queue names) the
    way the CLI does: every control visible, tracebacks keeping their newlines."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), 0, multiline=True)


__all__ = ["DEFAULT_LIMIT", "ELLIPSIS", "SafeFormatter", "cap", "to_str", "visible"]
