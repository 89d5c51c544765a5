"""Formatting of counts, durations, timestamps and sparklines (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

SPARK = " ▁▂▃▄▅▆▇█"


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def duration(seconds: float | None) -> str:
    """Coarse human duration: ``45s``, ``12m``, ``3h``, ``5d`` (coarse on purpose: stable)."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 60:
        return f"{int(s)}s"
    if s < 3600:
        return f"{int(s // 60)}m"
    if s < 86400:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"


def stamp(ms: int | None) -> str:
    """Absolute UTC time ``2026-11-23 10:12:08``."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def relative(ms: int | None, now_s: float) -> str:
    """``in 5m`` / ``3h ago`` relative to ``now_s`` (the app's injected clock)."""
    if not ms:
        return "-"
    delta = ms / 1000 - now_s
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"


def sparkline(values: Sequence[int], width: int = 12) -> str:
    """Unicode sparkline of the last ``width`` values, scaled to the largest."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    top = max(vals)
    if top <= 0:
        return SPARK[1] * len(vals)
    return "".join(SPARK[1 + round(v / top * (len(SPARK) - 2))] if v > 0 else SPARK[1] for v in vals)


def bar(percent: float | None, width: int = 10) -> str:
    """Text progress bar ``██████░░░░  60%``."""
    if percent is None:
        return ""
    p = max(0.0, min(100.0, percent))
    full = round(p / 100 * width)
    return "█" * full + "░" * (width - full) + f" {p:3.0f}%"


def seconds(s: float | None) -> str:
    """Precise short duration for runtimes: ``0.42s``, ``12.3s``, then as ``duration``."""
    if s is None:
        return "-"
    if s < 10:
        return f"{max(0.0, s):.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    return duration(s)


def drain(pending: int, drain_minutes: float | None) -> str:
    """Backlog forecast: ``drains in ~4 min``, ``not draining``, or ``-`` when empty."""
    if not pending:
        return "-"
    if drain_minutes is None:
        return "not draining"
    if drain_minutes < 120:
        return f"drains in ~{max(1, round(drain_minutes))} min"
    return f"drains in ~{drain_minutes / 60:.0f} h"
