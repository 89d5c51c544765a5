"""The hostile-text corpus: nothing from Redis may style, click, move the cursor or reorder text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from textual.content import Content

from rediq_tui import safe

CORPUS = [
    "[/oops]",
    "\\[",  # Rich markup would show it as "[": a backslash lost
    "\\[b]x",
    "[@click=app.quit]click me[/]",
    "[bold red]shout[/bold red]",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;owned title\x07",
    "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",
    "\x1bP+q544e\x1b\\",
    "\x9b2J\x9d0;title\x9c",
    "\x1b[2J\x1b[H\x1b[?1049h",
    "bell\x07back\x08space\x7fdel",
    "cr\roverwrite",
    "\u202eevil\u202c \u2066iso\u2069 \u200fmark",
    "\ud800lone surrogate",
    "tab\there",
    "line\nbreak",
    "\x00nul\x1f",
]

FORBIDDEN = set(range(0x00, 0x09)) | set(range(0x0B, 0x20)) | set(range(0x7F, 0xA0))
FORBIDDEN |= set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F}


def assert_inert(text: str, *, multiline: bool = False) -> None:
    bad = [hex(ord(ch)) for ch in text if ord(ch) in FORBIDDEN or 0xD800 <= ord(ch) <= 0xDFFF]
    if multiline:
        bad = [b for b in bad if b != "0xa"]
    assert not bad, f"control characters left: {bad} in {text!r}"
    text.encode("utf-8")  # valid UTF-8


@pytest.mark.parametrize("hostile", CORPUS)
def test_clean_strips_controls_and_sequences(hostile: str) -> None:
    out = safe.clean(hostile)
    assert_inert(out)
    assert "\x1b" not in out and "\n" not in out and "\t" not in out


def test_controls_are_shown_not_deleted() -> None:
    """Two different names never look alike: ESC and bidi overrides show as placeholders."""
    assert safe.clean("\x1b[31mred\x1b[0m") == "␛[31mred␛[0m"
    assert safe.clean("\x1b]0;owned title\x07ok") == "␛]0;owned title␇ok"
    assert safe.clean("\u202eevil\u202c") == "⟨U+202E⟩evil⟨U+202C⟩"
    assert safe.clean(b"bad \xff\xfe utf8") == "bad \ufffd\ufffd utf8"
    assert safe.clean("lnk\x1b[0m") != safe.clean("lnk")


@pytest.mark.parametrize("hostile", CORPUS)
def test_text_is_literal(hostile: str) -> None:
    """What the console shows goes in as a ``Text`` (never parsed as markup), and stays the
    cleaned text with no style and no @click meta once Textual has it."""
    shown = safe.text(hostile)
    assert shown.plain == safe.clean(hostile)
    assert not shown.spans
    content = Content.from_rich_text(shown)
    assert content.plain == safe.clean(hostile)
    assert not content.spans


def test_one_megabyte_payload_is_capped() -> None:
    payload = {"blob": "A" * 1_000_000, "evil": "[@click=app.quit]"}
    preview = safe.preview(payload)
    assert len(preview) <= safe.PREVIEW_LIMIT
    pretty = safe.pretty_json(payload)
    assert len(pretty) <= safe.DETAIL_LIMIT
    assert "chars)" in pretty


def test_multiline_keeps_newlines_but_nothing_else() -> None:
    out = safe.clean("Traceback:\n\x1b[31m  File x\x1b[0m\n\tline", 1000, multiline=True)
    assert out == "Traceback:\n␛[31m  File x␛[0m\n    line"


@given(st.text())
def test_any_text_is_inert(value: str) -> None:
    out = safe.clean(value)
    assert_inert(out)
    assert len(out) <= safe.DEFAULT_LIMIT
    shown = Content.from_rich_text(safe.text(value))
    assert shown.plain == out
    assert not shown.spans


@given(st.binary())
def test_any_bytes_are_inert(value: bytes) -> None:
    assert_inert(safe.clean(value, 10_000, multiline=True), multiline=True)
