"""Helpers shared by the HA tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from redis.crc import key_slot

from tests.servers import ClusterSet

T = TypeVar("T")


def spread_queues(c: ClusterSet, count: int = 3) -> list[str]:
    """Queue names whose hash tags land on ``count`` different primaries."""
    chosen: dict[int, str] = {}
    for i in range(1000):
        name = f"q{i}"
        port = c.node_for_slot(key_slot(f"rediq:{{{name}}}:pending".encode()))
        chosen.setdefault(port, name)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("could not find queues on distinct primaries")


def retrying(fn: Callable[[], T], errors: list[str], deadline_s: float = 30.0, pause_s: float = 0.05) -> T:
    """Call ``fn`` until it succeeds (an application retrying the same idempotent call);
    records each error's type and first line in ``errors``."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - recorded, asserted on by the caller
            errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            if os.environ.get("REDIQ_HA_DEBUG"):
                print(f"{time.monotonic():.2f} {errors[-1][:150]}")
            if time.monotonic() > deadline:
                raise
            time.sleep(pause_s)


ACL_DIR = Path(__file__).resolve().parents[2] / "docs" / "acl"
PASSWORD = "s3cret-Pw"


def acl_file(name: str) -> str:
    """``docs/acl/<name>`` verbatim: exactly one ``user`` line, as an aclfile requires (a server
    refuses to start on any other line, comments included)."""
    text = (ACL_DIR / name).read_text()
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("user "), f"{name} must be exactly one user line"
    assert ">CHANGE_ME" in lines[0]
    return lines[0]


def acl_line(name: str) -> str:
    """The file's user line with the test password instead of ``CHANGE_ME``."""
    return acl_file(name).replace(">CHANGE_ME", ">" + PASSWORD)


def acl_setuser_args(line: str) -> list[str]:
    """``ACL SETUSER`` arguments replaying an aclfile user line: its name, then its rules."""
    words = line.split()
    assert words[0] == "user"
    return words[1:]
