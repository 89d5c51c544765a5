"""The console's shared state: the connection, as one immutable value the app replaces and
every status bar watches (``App.conn`` is a Textual reactive)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connection:
    """What the status bar shows about Redis and the refresh loop."""

    connected: bool | None = None
    """``None`` before the first poll, then whether the last poll reached Redis."""
    error: str = ""
    last_ok: float | None = None
    """Clock time of the last successful poll."""
    retry_in: float | None = None
    paused: bool = False
    read_only_reason: str = ""
    interval_s: float = 2.0
