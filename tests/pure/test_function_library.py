"""The function library built from engine/scripts (one function per script, a name that follows
the source) and the script mode setting: no server (tests/engine/test_functions.py loads it
into one)."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis

from engine import lua
from engine.backend import SyncBackend
from engine.errors import InvalidConfig


def test_every_script_file_is_a_function_of_the_library() -> None:
    files = {
        p.name[: -len(".lua")]
        for p in resources.files("engine").joinpath("scripts").iterdir()
        if p.name.endswith(".lua") and not p.name.startswith("_")
    }
    assert set(lua.SCRIPT_NAMES) == files and "dequeue" in files
    lib = lua.library()
    assert re.fullmatch(r"rediq_[0-9a-f]{12}", lib.name)
    assert lib.source.startswith(f"#!lua name={lib.name}\n")
    registered = set(re.findall(r"function_name = '([a-z0-9_]+)'", lib.source))
    assert registered == {lib.function(n) for n in (*files, lua.VERSION_FUNCTION)}
    # the version check needs FCALL_RO only: its function is registered no-writes
    assert f"function_name = '{lib.function('version')}', flags = {{'no-writes'}}" in lib.source


def test_the_library_name_follows_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed script is a new version: a new library name, so an old worker keeps its own."""
    before = lua.library()
    real = lua._read

    def edited(name: str) -> str:
        return real(name) + ("\n-- edited\n" if name == "ack" else "")

    lua._library.cache_clear()
    monkeypatch.setattr(lua, "_read", edited)
    try:
        after = lua.library()
        assert after.name != before.name and after.version != before.version
    finally:
        monkeypatch.undo()
        lua._library.cache_clear()
    assert lua.library() == before


def test_an_unknown_script_mode_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lua.MODE_ENV, "lua")
    with pytest.raises(InvalidConfig) as caught:
        SyncBackend(redis.Redis())
    assert "\n" not in str(caught.value) and "REDIQ_SCRIPT_MODE" in str(caught.value)
    assert str(caught.value).startswith("E011: ")
