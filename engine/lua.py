"""Lua scripts: read from ``engine/scripts/*.lua`` once, run by SHA, reloaded after NOSCRIPT.

Every script gets ``_lib.lua`` prepended, so shared helpers exist once in the source tree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

SCRIPT_NAMES = (
    "enqueue",
    "dequeue",
    "ack",
    "fail",
    "extend",
    "release",
    "requeue",
    "cancel",
    "delete",
    "pause",
    "progress",
    "dep_register",
    "dep_resolve",
    "quarantine",
    "restore",
    "start",
    "testkit_advance",
)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    return resources.files("engine").joinpath(f"scripts/{name}.lua").read_text("utf-8")


@cache
def script(name: str) -> Script:
    source = _read("_lib") + "\n" + _read(name)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def all_scripts() -> list[Script]:
    return [script(name) for name in SCRIPT_NAMES]


def is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, NoScriptError) or "NOSCRIPT" in str(exc)


def evalsha_args(s: Script, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    return (s.sha, len(keys), *keys, *args)
