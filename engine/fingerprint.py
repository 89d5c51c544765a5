"""Error normalisation for failure groups: the same failure with other ids, numbers or
addresses reads the same, so 700,000 dead tasks collapse into the handful of real problems."""

from __future__ import annotations

import re

MAX_SAMPLE = 300

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # times first, whole: their digits would otherwise become several <n> around fixed letters
    # ('02T04', 'Z'), and the same failure at another second would make a group of its own
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2}\b)?)?"
        ),
        "<time>",
    ),
    (
        re.compile(
            rf"\b(?:{_DAY},? )?\d{{1,2}} {_MONTH} \d{{4}}(?: \d{{2}}:\d{{2}}(?::\d{{2}})?)?(?: GMT| UTC)?"
        ),
        "<time>",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b"), "<time>"),
    (
        re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<addr>"),
    (re.compile(r"\[[0-9a-fA-F:]+\](?::\d+)?"), "<addr>"),
    (re.compile(r"\b[\w.-]+\.[a-z]{2,}:\d+\b"), "<addr>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<id>"),
    (re.compile(r"\b[a-zA-Z]+[-_][0-9a-zA-Z]{6,}\b"), "<id>"),
    # any token of 6+ characters mixing letters and digits reads as an identifier
    (re.compile(r"\b(?=[a-zA-Z]*\d)(?=\d*[a-zA-Z])[0-9a-zA-Z]{6,}\b"), "<id>"),
    (re.compile(r"'[^']{0,200}'|\"[^\"]{0,200}\""), "<str>"),
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise_error(error: str) -> str:
    """``ConnectionError: 10.0.0.7:6379 refused order o-8f3a2b1c after 3.5 s`` becomes
    ``ConnectionError: <addr> refused order <id> after <n> s``."""
    first_line = error.strip().splitlines()[0] if error.strip() else ""
    text = first_line
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text.strip()[:MAX_SAMPLE]
