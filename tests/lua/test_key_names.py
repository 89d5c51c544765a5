"""The key names scripts build are the ones ``engine.keys`` builds: every generated Lua helper,
run on a real server, against the Python builder of the same name (both directions: no helper
without a builder, no per-id builder without a helper)."""

from __future__ import annotations

import redis

from engine import keys, lua
from engine.keys import Keyspace

# a queue name and ids with the characters a key may hold: separators, braces, dots, digits
QK = Keyspace("app:v2").queue("orders.eu-1:prio")
ID = "id:with{braces}.1"


def test_every_lua_key_helper_builds_the_name_its_python_builder_does(redis_url: str) -> None:
    names = list(keys.PER_ID_KEYS)
    calls = ", ".join(f"{name}_key(ARGV[1], ARGV[2])" for name in names)
    queue_wide = list(keys.SCRIPT_QUEUE_KEYS)
    calls += "".join(f", {name}_key(ARGV[1])" for name in queue_wide)
    source = lua.key_helpers() + f"return {{{calls}, stat_key(ARGV[1], 'p', tonumber(ARGV[3]))}}"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        built = r.eval(source, 0, QK.base, ID, 29_445_123)
    finally:
        r.close()
    assert isinstance(built, list)
    python = [getattr(QK, name)(ID) for name in names]
    python += [getattr(QK, name) for name in queue_wide] + [QK.stat("p", 29_445_123)]
    labels = [*names, *queue_wide, "stat"]
    assert dict(zip(labels, built, strict=True)) == dict(zip(labels, python, strict=True))
    per_id_builders = {
        name
        for name in dir(keys.QueueKeys)
        if not name.startswith("_")
        and name not in ("stat", "state_key", "base", "prefix", "queue")
        and callable(getattr(keys.QueueKeys, name))
    }
    assert per_id_builders == set(names), "a builder of a key named by id has no Lua helper"
