"""Check that the table-driven Lua tests (tests/lua) catch changed conditions in the scripts.

    python scripts/lua_mutants.py

Copies the committed tree (``git archive HEAD``) to a temporary directory, applies each
hand-made mutant below to one script there (never to the working tree), runs that script's
table (``tests/lua/test_<script>.py``; all of tests/lua for ``_lib``) and reports whether a
named case failed. Exit status 1 when any mutant survives. ~1 min on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (script, text in it, replacement): each a condition or effect a table case pins down
MUTANTS = [
    ("requeue", "completed = KEYS[7], waiting = KEYS[8]}", "completed = KEYS[7]}"),
    ("requeue", "redis.call('DEL', base .. 'deps:' .. id)", "-- no DEL deps"),
    (
        "restore",
        "(was == 'scheduled' or was == 'retry' or was == 'waiting') and due > now",
        "(was == 'scheduled' or was == 'waiting') and due > now",
    ),
    ("restore", "if f[1] == 'quarantined' and not back then", "if f[1] == 'quarantined' then"),
    ("delete", "for k = 1, 9 do", "for k = 1, 8 do"),
    ("delete", "if existed or removed > 0 then", "if existed then"),
    (
        "quarantine",
        "redis.call('HDEL', tk, 'lease', 'cancel', 'reserved', 'worker')",
        "redis.call('HDEL', tk, 'lease', 'cancel', 'worker')",
    ),
    ("quarantine", "if state and from[state] then", "if state then"),
    ("cancel", "if #cancelled > 0 then", "if true then"),
    ("cancel", "elseif state == 'active' then", "elseif state == 'active' or state == 'dead' then"),
    ("dep_register", "if ttl > 0 then", "if ttl > 0 and false then"),
    ("dep_resolve", "if f[3] == 'cancel' or f[3] == 'hold' then", "if f[3] == 'cancel' then"),
    ("dep_resolve", "if redis.call('HGET', tk, 'reason') == held then return 'noop' end", ""),
    ("pause", "'NX'", "'GET'"),
    ("doctor_place", "retry = true}", "}"),
    (
        "doctor_place",
        "score = fmt((tonumber(f[2]) or 50) * PRIORITY_SHIFT)",
        "score = fmt((tonumber(f[2]) or 0) * PRIORITY_SHIFT)",
    ),
    ("doctor_fix", "if beat and beat > tonumber(ARGV[2])", "if beat and beat >= tonumber(ARGV[2])"),
    ("doctor_fix", "or state == 'retry' then", "then"),
    ("testkit_advance", "now + horizon", "now + horizon * 2"),
    ("_lib", "if hstate and LIVE[hstate] then", "if hstate then"),
]


def main() -> int:
    survived = 0
    with tempfile.TemporaryDirectory(prefix="rediq-lua-mutants-") as tmp:
        root = Path(tmp)
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        for script, old, new in MUTANTS:
            path = root / "engine/scripts" / f"{script}.lua"
            text = path.read_text()
            if text.count(old) != 1:
                print(f"STALE      {script}: {old!r} is not in the script once; update this list")
                survived += 1
                continue
            path.write_text(text.replace(old, new))
            try:
                target = "tests/lua" if script == "_lib" else f"tests/lua/test_{script}.py"
                run = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
                    cwd=root,
                    capture_output=True,
                    text=True,
                )
            finally:
                path.write_text(text)
            failed = [
                line.split("[", 1)[-1].split("]")[0]
                for line in run.stdout.splitlines()
                if line.startswith("FAILED")
            ]
            if run.returncode == 1:
                print(f"KILLED     {script}: {old!r} -> {new!r}\n           by: {failed[:3]}")
            else:
                survived += 1
                print(f"SURVIVED   {script}: {old!r} -> {new!r} (pytest exit {run.returncode})")
    print(f"{len(MUTANTS) - survived}/{len(MUTANTS)} killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
