"""Lua scripts: read from ``engine/scripts/*.lua`` once, run as a function library or by SHA.

Two ways to run them (``REDIQ_SCRIPT_MODE``):

- ``functions`` (default): every script becomes a function of one *library*, built here at
  import from whatever ``*.lua`` files exist (one whose name starts with ``_`` is not a
  script; ``_lib.lua`` is the prelude of all). The library's name carries a hash of its
  source (``rediq_<hash12>``, functions ``rediq_<hash12>_<script>``), so two rediq versions
  run side by side on one server during a rolling deploy, and a client can never call a
  library other than its own: a missing function *is* a version mismatch. Loaded once with
  ``FUNCTION LOAD`` (``rediq server install-functions`` or the first client allowed to),
  then persisted (RDB/AOF) and replicated by the server, so workers need ``FCALL`` only: no
  ``EVAL``/``SCRIPT``, hence no arbitrary Lua.
- ``eval``: ``EVALSHA`` with ``SCRIPT LOAD`` after ``NOSCRIPT``, for servers where functions
  cannot be installed (Redis < 7, some managed services). Weaker: the user must be allowed
  ``SCRIPT LOAD``, i.e. to run any Lua it likes.

Each script's body is wrapped as ``function(KEYS, ARGV) <body> end``, so it reads ``KEYS`` and
``ARGV`` as in ``EVAL``; ``_lib.lua`` becomes library-level locals shared by every function
(each function may capture at most 60 of them as upvalues, Lua 5.1's limit). A script whose
header has the line ``-- FLAGS: no-writes`` is registered read-only and called with ``FCALL_RO``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from engine.errors import FunctionsMissing, InvalidConfig

MODE_ENV = "REDIQ_SCRIPT_MODE"
LIBRARY_PREFIX = "rediq_"
VERSION_FUNCTION = "version"
"""A generated read-only function answering the library's version: the version check."""

_READ_ONLY_MARK = re.compile(r"^--\s*FLAGS:\s*no-writes\s*$", re.MULTILINE)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ScriptMode(StrEnum):
    FUNCTIONS = "functions"
    EVAL = "eval"


def script_mode(value: str | None = None) -> ScriptMode:
    """The mode named by ``value`` or ``$REDIQ_SCRIPT_MODE`` (default: functions)."""
    text = (value if value is not None else os.environ.get(MODE_ENV, "")).strip().lower()
    if not text:
        return ScriptMode.FUNCTIONS
    try:
        return ScriptMode(text)
    except ValueError:
        raise InvalidConfig(
            f"{MODE_ENV}={text!r} is not a script mode",
            fix=f"Set {MODE_ENV} to 'functions' (default) or 'eval' (EVALSHA; needs SCRIPT LOAD)",
        ) from None


def _scripts_dir() -> Any:
    return resources.files("engine").joinpath("scripts")


def _discover() -> tuple[str, ...]:
    names = []
    for entry in _scripts_dir().iterdir():
        name = entry.name
        if name.endswith(".lua") and not name.startswith("_"):
            stem = name[: -len(".lua")]
            if not _NAME.match(stem) or stem == VERSION_FUNCTION:
                raise RuntimeError(
                    f"engine/scripts/{name}: a script's name must be [a-z][a-z0-9_]*, not 'version'"
                )
            names.append(stem)
    return tuple(sorted(names))


SCRIPT_NAMES = _discover()
"""Every script: each non-underscore ``engine/scripts/*.lua``, found at import."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    return str(_scripts_dir().joinpath(f"{name}.lua").read_text("utf-8"))


def _preludes() -> str:
    return _read("_lib")


@cache
def script(name: str) -> Script:
    """The ``EVAL`` form of a script: the preludes, then its body."""
    source = _preludes() + "\n" + _read(name)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def all_scripts() -> list[Script]:
    return [script(name) for name in SCRIPT_NAMES]


def read_only(name: str) -> bool:
    return name in _library().read_only


def is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, NoScriptError) or "NOSCRIPT" in str(exc)


def is_function_missing(exc: BaseException) -> bool:
    """The server's reply to an FCALL of a function it does not have (no library or another
    version of it). The reply carries only the generic ``ERR`` code, so its text decides."""
    return "Function not found" in str(exc)


def is_library_present(exc: BaseException) -> bool:
    """``FUNCTION LOAD`` of a library that is already there: another client loaded it first."""
    return "already exists" in str(exc)


def evalsha_args(s: Script, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    return (s.sha, len(keys), *keys, *args)


# ------------------------------------------------------------------------------ the library


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    """``rediq_<hash12>``: the hash of everything below the first line."""
    version: str
    source: str
    read_only: frozenset[str]

    def function(self, script_name: str) -> str:
        return f"{self.name}_{script_name}"


def _register(function: str, body: str, read_only: bool) -> str:
    flags = "{'no-writes'}" if read_only else "{}"
    # Lua's long brackets cannot hold the body (it may contain ']]'); the body is plain code
    return (
        f"redis.register_function{{function_name = '{function}', flags = {flags},\n"
        f"  callback = function(KEYS, ARGV)\n{body}\nend}}\n"
    )


@cache
def _library() -> Library:
    bodies = {name: _read(name) for name in SCRIPT_NAMES}
    read_only = frozenset(name for name, body in bodies.items() if _READ_ONLY_MARK.search(body))
    # hash over the version-free text, so the hash names the source and not itself
    template = _build("@", _preludes(), bodies, read_only)
    version = hashlib.sha1(template.encode()).hexdigest()[:12]
    name = f"{LIBRARY_PREFIX}{version}"
    source = f"#!lua name={name}\n" + _build(name, _preludes(), bodies, read_only)
    return Library(name, version, source, read_only)


def _build(name: str, prelude: str, bodies: dict[str, str], read_only: frozenset[str]) -> str:
    parts = [
        "-- generated by engine/lua.py from engine/scripts/*.lua: do not edit here\n",
        prelude,
        "\n",
        f"local REDIQ_LIBRARY_NAME = '{name}'\n",
        _register(f"{name}_{VERSION_FUNCTION}", "return REDIQ_LIBRARY_NAME", read_only=True),
    ]
    for script_name, body in bodies.items():
        parts.append(_register(f"{name}_{script_name}", body, script_name in read_only))
    return "".join(parts)


def library() -> Library:
    """The function library of this rediq version, built from ``engine/scripts``."""
    return _library()


@cache
def _fcall_head(script_name: str) -> tuple[str, str]:
    lib = _library()
    if script_name not in SCRIPT_NAMES:
        raise KeyError(f"no script engine/scripts/{script_name}.lua")
    return ("FCALL_RO" if script_name in lib.read_only else "FCALL", lib.function(script_name))


def fcall_args(script_name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
    return (*_fcall_head(script_name), len(keys), *keys, *args)


def version_call() -> tuple[Any, ...]:
    """``FCALL_RO rediq_<hash>_version 0``: answers the library's name where it is installed,
    ``Function not found`` where it is not. Needs only ``FCALL_RO`` (no ``FUNCTION LIST``)."""
    return ("FCALL_RO", _library().function(VERSION_FUNCTION), 0)


# ------------------------------------------------------------------------------ where it lives


@dataclass(frozen=True, slots=True)
class LibraryStatus:
    """Whether this version's library is on one primary (``node``: 'host:port' or 'server')."""

    node: str
    present: bool
    loaded: bool = False
    """Loaded just now by this client."""


def primaries(client: Any) -> list[Any]:
    """Where a library must be loaded: every primary of a Cluster, else ``[None]`` (the one
    server, or the Sentinel primary)."""
    return list(client.get_primaries()) if hasattr(client, "get_primaries") else [None]


def node_name(node: Any) -> str:
    return "server" if node is None else f"{node.host}:{node.port}"


def on(node: Any) -> dict[str, Any]:
    """``execute_command`` arguments sending a command to ``node`` (None: the client's own)."""
    return {} if node is None else {"target_nodes": node}


def list_call() -> tuple[str, ...]:
    """``FUNCTION LIST`` of every rediq library (any version): an admin command."""
    return ("FUNCTION", "LIST", "LIBRARYNAME", f"{LIBRARY_PREFIX}*")


def library_names(reply: Any) -> list[str]:
    """rediq library names in a ``FUNCTION LIST`` reply (RESP2 flat lists or RESP3 maps)."""
    names = []
    for entry in reply or []:
        fields = entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2], strict=False))
        name = fields.get("library_name", fields.get(b"library_name"))
        text = name.decode() if isinstance(name, bytes) else str(name)
        if text.startswith(LIBRARY_PREFIX):  # the pattern matches case-insensitively
            names.append(text)
    return names


def missing_library(node: Any, exc: BaseException) -> FunctionsMissing:
    reason = " ".join(str(exc).split()).rstrip(".")
    return FunctionsMissing(
        f"rediq's function library {library().name} is not installed on {node_name(node)} and "
        f"this Redis user may not load it ({reason})"
    )
