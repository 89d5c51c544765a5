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
    ("requeue", "waiting = KEYS[8], expired = expired_key(base)}", "expired = expired_key(base)}"),
    ("requeue", "redis.call('DEL', deps_key(base, id))", "-- no DEL deps"),
    ("requeue", "settle_completed(base, id, state, f[2], f[3])", "-- no settle"),
    ("quarantine", "settle_completed(base, id, state, f[2], f[3])", "-- no settle"),
    ("ack", "if not f[11] then history(base, id, now, 'completed', '') end", "-- no completion entry"),
    ("fail", "settle_active(base, id)\nredis.call('ZREM', KEYS[1], id)", "redis.call('ZREM', KEYS[1], id)"),
    ("_lib", "and (not f[3] or e[3] == f[3]) then return end", "then end"),
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
        "score = fmt(priority_of(f[2]) * PRIORITY_SHIFT)",
        "score = fmt((tonumber(f[2]) or 0) * PRIORITY_SHIFT)",
    ),
    ("doctor_fix", "if beat and beat > tonumber(ARGV[2])", "if beat and beat >= tonumber(ARGV[2])"),
    ("doctor_fix", "or state == 'retry' then", "then"),
    ("testkit_advance", "now + horizon", "now + horizon * 2"),
    ("_lib", "if hstate and LIVE[hstate] then", "if hstate then"),
    ("_lib", "math.max(tonumber(f[3]) or 0, clock)", "clock"),
    ("_lib", "if tag > (tonumber(f[1]) or 0) then", "if false then"),
    ("_lib", "if tonumber(f[2]) == tag then", "if false then"),
    ("_lib", "local w = tonumber(f[4]) or tonumber(f[5]) or 1", "local w = 1"),
    ("enqueue", "if tag then score = tonumber(priority) * PRIORITY_SHIFT + tag end", "-- no tag"),
    ("enqueue", "and not group and not tag then", "and not group then"),
    # the worker scripts
    ("start", "if f[3] == '1' then", "if true then"),
    ("start", "f[1] == 'active' and token_of(f[4], f[5]) == token", "f[1] == 'active'"),
    ("ack", "if f[1] == 'active' and owned and f[2] ~= '1' then", "if f[1] == 'active' and owned then"),
    ("ack", "elseif f[1] ~= 'completed' or not owned then", "elseif true then"),
    (
        "ack",
        "if keep and keep > 0 then ttl = has_dependents and math.max(keep, retention) or keep end",
        "if keep and keep > 0 then ttl = keep end",
    ),
    (
        "fail",
        "(tonumber(f[2]) or 0) > (tonumber(f[3]) or 0)",
        "(tonumber(f[2]) or 0) >= (tonumber(f[3]) or 0)",
    ),
    ("fail", "if f[8] == token then", "if false then"),
    (
        "fail",
        "redis.call('HDEL', tk, 'lease', 'cancel', 'progress', 'pmsg')",
        "redis.call('HDEL', tk, 'lease', 'cancel')",
    ),
    ("extend", "'ZADD', KEYS[1], 'XX', now + lease_ms", "'ZADD', KEYS[1], now + lease_ms"),
    ("extend", "if f[4] == '1' then table.insert(cancel, id) end", ""),
    ("release", "if f[3] ~= '1' and attempts > 0 then", "if attempts > 0 then"),
    ("progress", "if current and percent < current then percent = current end", ""),
    ("defer", "if now - since >= limit then", "if now - since > limit then"),
    (
        "defer",
        "if s and tonumber(a) == attempts then since = tonumber(s) end",
        "if s then since = tonumber(s) end",
    ),
    ("dequeue", "elseif f[1] and f[5] == '1' then", "elseif false then"),
    ("dequeue", "if attempts > max_retry then", "if attempts >= max_retry then"),
    ("dequeue", "local dlv = (tonumber(f[10]) or 0) + 1", "local dlv = (tonumber(f[10]) or 0)"),
    ("dequeue", "if receipt[1] == request then", "if receipt[1] then"),
    (
        "dequeue",
        "f[10] == 'active' and f[11] == worker and (tonumber(f[12]) or 0) > now",
        "f[10] == 'active'",
    ),
    ("dequeue", "free = free - in_inbox", "free = free"),
    ("dequeue", "if #popped < 2 * max_n and skipped", "if true and skipped"),
    ("enqueue", "if taker and not runs_before_pending(score) then taker = nil end", ""),
    ("enqueue", "if free and tonumber(deadline) > now then", "if free then"),
    (
        "enqueue",
        "or hstate == 'dead' or hstate == 'cancelled'\n          or hstate == 'expired' then",
        "or hstate == 'dead'\n          or hstate == 'expired' then",
    ),
    ("enqueue", "redis.call('EXISTS', KEYS[5]) == 0", "true"),
    # batching (batch_pick in _lib.lua, its hook in dequeue.lua)
    ("_lib", "if #m >= m.size * 2 or m.due <= now then", "if #m >= m.size * 2 then"),
    ("_lib", "if #m >= m.size * 2 then break end", "if false then break end"),
    ("_lib", "local key = ttype .. '\\n' .. (f[2] or '')", "local key = ttype"),
    ("dequeue", "if n_start <= 0 then -- no free slot", "if false then -- no free slot"),
    ("dequeue", "if KEYS[13] and not batched then", "if KEYS[13] then"),
    # a pause of the queue's bucket withdraws the hand-off registrations (its type's does not)
    ("throttle", "if bucket == KEYS[4] and KEYS[6] then", "if false then"),
    ("throttle", "if bucket == KEYS[4] and KEYS[6] then", "if KEYS[6] then"),
    # arrivals go where workers listen, the rest where observers do (issue 20)
    ("_lib", "return ARRIVAL_EVENTS[event] and arrivals_channel(channel) or channel", "return channel"),
    ("_lib", "ARRIVAL_EVENTS[event] and arrivals_channel(channel) or channel", "arrivals_channel(channel)"),
    ("pause", "event_channel(ARGV[1], event)", "ARGV[1]"),
    # whether the queue is fair: read once per call, and still read
    ("enqueue", "state == 'pending' and is_fair() and fair_tag(", "state == 'pending' and fair_tag("),
    ("enqueue", "fair_key(base), 'on') == '1' end", "fair_key(base), 'on') == 'x' end"),
]

MORE_TABLES = {"dequeue": ("test_batching.py",), "throttle": ("test_rate_limit.py",)}
"""Tables of a script's cases beyond ``test_<script>.py`` (batching's dequeue cases; throttle's
cases sit with the rate limit's)."""


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
                targets = ["tests/lua"] if script == "_lib" else [f"tests/lua/test_{script}.py"]
                targets += [f"tests/lua/{t}" for t in MORE_TABLES.get(script, ())]
                targets = [t for t in targets if (root / t).exists()]
                run = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets],
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
