"""Scripts never spell a key name: they call the helpers ``engine.lua`` generates from
``engine.keys`` (tests/lua/test_key_names.py runs them on a server against the Python builders)."""

from __future__ import annotations

import re
from pathlib import Path

from engine import keys, lua

SCRIPTS = Path(__file__).resolve().parents[2] / "engine" / "scripts"

# text joined onto the queue's key base (ARGV[1], by convention the local 'base'): a key name
# spelled by hand
SPELLED_KEY = re.compile(r"\b(?:base|ARGV\[1\])\s*\.\.\s*'")
HELPER_CALL = re.compile(r"\b([a-z_]+_key)\(")
HELPERS = {f"{name}_key" for name in [*keys.PER_ID_KEYS, *keys.SCRIPT_QUEUE_KEYS]} | {"stat_key"}


def lua_files() -> dict[str, str]:
    files = {path.name: path.read_text() for path in sorted(SCRIPTS.glob("*.lua"))}
    assert "_lib.lua" in files and "dequeue.lua" in files
    return files


def test_no_script_spells_a_key_name() -> None:
    spelled = {
        f"{name}:{number}: {line.strip()}"
        for name, text in lua_files().items()
        for number, line in enumerate(text.splitlines(), 1)
        if SPELLED_KEY.search(line.split("--")[0])
    }
    assert spelled == set(), "use the generated helpers (engine/keys.py PER_ID_KEYS):\n" + "\n".join(
        sorted(spelled)
    )


def test_every_key_helper_a_script_calls_is_generated() -> None:
    called = {m for text in lua_files().values() for m in HELPER_CALL.findall(text)}
    assert {"task_key", "history_key", "deps_key", "dependents_key", "stat_key"} <= called
    assert called - HELPERS == set()


def test_the_helpers_come_first_in_both_script_forms() -> None:
    helpers = lua.key_helpers()
    for name in HELPERS:
        assert helpers.count(f"local function {name}(") == 1
    assert lua.script("ack").source.startswith(helpers)
    library = lua.library().source
    assert library.index(helpers) < library.index("local function now_ms()")
