"""``docs/acl/worker.acl`` grants every command rediq's functions and clients send, and no way to
run Lua of its own: checked on the file itself, so a new script or command that the ACL lacks
fails here (the HA suite then proves the rules on a real server)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# sent by the engine but deliberately not granted to the worker: best effort (CONFIG GET of the
# eviction policy), the doctor's operator-only SCAN, and the admin's FUNCTION LOAD
NOT_FOR_WORKERS = {"config", "scan", "function", "script", "info", "slowlog", "memory"}
"""(INFO, SLOWLOG and MEMORY: the console's Redis page, engine/serverinfo.py.)"""


def _granted(name: str) -> set[str]:
    (line,) = (ROOT / "docs" / "acl" / name).read_text().splitlines()
    return {word[1:].lower() for word in line.split() if word.startswith("+")}


def _denied_lua(granted: set[str]) -> set[str]:
    lua_runners = {"eval", "evalsha", "eval_ro", "evalsha_ro", "script", "function", "@scripting", "@all"}
    return {g for g in granted if g.split("|")[0] in lua_runners}


def test_worker_acl_grants_every_command_of_the_scripts_and_the_engine() -> None:
    in_scripts = {
        m.lower()
        for path in (ROOT / "engine" / "scripts").glob("*.lua")
        for m in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", path.read_text())
    }
    in_engine = {
        m.lower()
        for path in (ROOT / "engine").rglob("*.py")
        for m in re.findall(r'(?:cmd\(|command=\()\s*"([A-Z]+)"', path.read_text())
    }
    assert "zpopmin" in in_scripts and "wait" in in_engine
    granted = _granted("worker.acl")
    assert {"fcall", "fcall_ro", "wait"} <= granted
    assert (in_scripts | in_engine) - NOT_FOR_WORKERS - granted == set()


def test_no_acl_lets_its_user_run_lua_of_its_own() -> None:
    for name in ("worker.acl", "console-readonly.acl"):
        assert _denied_lua(_granted(name)) == set(), name
    assert "fcall" not in _granted("console-readonly.acl")  # every write function needs FCALL
