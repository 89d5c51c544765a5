"""Reading ``FUNCTION LIST`` replies (RESP2 flat lists, RESP3 maps, bytes or text) for rediq's
libraries only; an unknown script name is an error; the missing-library error names the
library, the node and the server's reason on one line."""

from __future__ import annotations

import pytest

from engine import lua
from engine.errors import FunctionsMissing


def test_library_names_from_resp2_resp3_bytes_and_text() -> None:
    reply = [
        ["library_name", "rediq_0123456789ab", "engine", "LUA"],  # RESP2, text
        [b"library_name", b"rediq_ba9876543210", b"engine", b"LUA"],  # RESP2, bytes
        {"library_name": "rediq_aaaaaaaaaaaa"},  # RESP3, text
        {b"library_name": b"rediq_bbbbbbbbbbbb"},  # RESP3, bytes
        {"library_name": "REDIQ_CCCCCCCCCCCC"},  # LIBRARYNAME matches case-insensitively: not ours
        ["library_name", "other_lib"],
    ]
    assert lua.library_names(reply) == [
        "rediq_0123456789ab",
        "rediq_ba9876543210",
        "rediq_aaaaaaaaaaaa",
        "rediq_bbbbbbbbbbbb",
    ]
    assert lua.library_names(None) == [] and lua.library_names([]) == []


def test_an_unknown_script_name_is_an_error() -> None:
    with pytest.raises(KeyError, match="no script engine/scripts/nope.lua"):
        lua._fcall_head("nope")


def test_the_missing_library_error_is_one_line_naming_library_node_and_reason() -> None:
    error = lua.missing_library(
        None, Exception("NOPERM this user has no permissions\nto run\tFUNCTION LOAD.")
    )
    assert isinstance(error, FunctionsMissing)
    text = str(error)
    assert lua.library().name in text and "server" in text
    assert "(NOPERM this user has no permissions to run FUNCTION LOAD)" in text and "\n" not in text
