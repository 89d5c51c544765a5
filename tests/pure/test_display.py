"""The one sanitiser: every hostile character shown as a placeholder, nothing deleted, and no
byte that can act on a terminal left in the output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.display import cap, visible

# what may never reach a terminal: C0 (but \n in multiline), DEL, C1, bidi controls, zero-width
# and other format characters, line/paragraph separators, tag characters, lone surrogates
ACTIVE = (
    set(range(0x00, 0x20))
    | set(range(0x7F, 0xA0))
    | {0xAD, 0x061C, 0x180E, 0xFEFF}
    | set(range(0x200B, 0x2010))
    | set(range(0x2028, 0x202F))
    | set(range(0x2060, 0x2065))
    | set(range(0x2066, 0x2070))
    | set(range(0xD800, 0xE000))
    | set(range(0xE0000, 0xE0080))
)


def inert(text: str, *, multiline: bool = False) -> bool:
    return all(ord(ch) not in ACTIVE or (multiline and ch == "\n") for ch in text)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;PWNED\x07", "␛]0;PWNED␇"),
        ("\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\", "␛]8;;https://evil.example␛\\link␛]8;;␛\\"),
        ("\x1b[2J\x1b[H", "␛[2J␛[H"),
        ("\x9b2J\x9d0;t\x9c", "⟨U+009B⟩2J⟨U+009D⟩0;t⟨U+009C⟩"),
        ("\u202eevil", "⟨U+202E⟩evil"),
        ("a\u200bb", "a⟨U+200B⟩b"),
        ("tag\U000e0041", "tag⟨U+E0041⟩"),
        ("nul\x00del\x7f", "nul␀del␡"),
        ("two\nlines\tand\rcr", "two␊lines␉and␍cr"),
        ("lone \ud800", "lone ⟨U+D800⟩"),
        ("plain ünïcödé ✓ 日本", "plain ünïcödé ✓ 日本"),
    ],
)
def test_placeholders(raw: str, shown: str) -> None:
    assert visible(raw, 0) == shown
    assert inert(visible(raw, 0))


def test_multiline_keeps_newlines_expands_tabs_and_shows_the_rest() -> None:
    assert visible("a\r\n\tb\x1b[0m\nc\r", 0, multiline=True) == "a\n    b␛[0m\nc␍"


def test_bytes_and_limits() -> None:
    assert visible(b"bad \xff utf8 \x1b") == "bad \ufffd utf8 ␛"
    big = "A" * 1_000_000 + "\x1b"
    out = visible(big, 300)
    assert len(out) <= 300 and out.endswith("chars)")
    assert cap("x" * 10, 5) == "xxxx…"


@given(st.text())
def test_any_text_is_inert_and_bounded(value: str) -> None:
    out = visible(value)
    assert inert(out) and len(out) <= 200
    out.encode("utf-8")


@given(st.binary())
def test_any_bytes_are_inert(value: bytes) -> None:
    assert inert(visible(value, 0, multiline=True), multiline=True)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (42, "42"),
        (" spaced  out ", " spaced  out "),
        ("\x1f\x20\x7e\x7f\x80\xa0", "␟ ~␡⟨U+0080⟩\xa0"),
    ],
)
def test_values_and_the_edges_of_the_ranges(value: object, shown: str) -> None:
    assert visible(value) == shown


@pytest.mark.parametrize(
    ("text", "limit", "capped"),
    [
        ("abcde", 5, "abcde"),
        ("abcdef", 5, "abcd…"),
        ("x" * 30, 23, "x" * 22 + "…"),
        ("x" * 30, 24, "x" * 12 + "…(+18 chars)"),
        ("x" * 24, 24, "x" * 24),
        ("abc", 0, "abc"),
    ],
)
def test_cap(text: str, limit: int, capped: str) -> None:
    assert cap(text, limit) == capped


def test_cap_counts_what_was_dropped_before() -> None:
    assert cap("x" * 10, 24, hidden=5) == "x" * 10 + "…(+5 chars)"


def test_long_text_reports_every_character_left_out() -> None:
    assert visible("y" * 2000, 100) == "y" * 85 + "…(+1,915 chars)"
    assert visible("a" * 100, 0) == "a" * 100  # no limit: nothing cut


def test_cap_edges() -> None:
    assert cap("ab", 1) == "…"
    assert visible("x" * 30, 24) == "x" * 12 + "…(+18 chars)"
    # a count that cannot fit beside any text still ends (it used to loop for ever)
    assert cap("x" * 30, 24, hidden=10**30) == "x" * 23 + "…"


def test_log_lines_show_controls_and_keep_traceback_lines() -> None:
    import logging

    from engine.display import SafeFormatter

    record = logging.LogRecord(
        "rediq.worker", logging.WARNING, "f.py", 1, "task %s: %s", ("t\x1b]0;x\x07", "boom"), None
    )
    try:
        raise ValueError("bad\u202eevil")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = SafeFormatter("%(levelname)s %(message)s").format(record)
    assert line.startswith("WARNING task t␛]0;x␇: boom\nTraceback (most recent call last):\n")
    assert line.endswith("ValueError: bad⟨U+202E⟩evil")
