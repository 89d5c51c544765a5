"""The old home of cron: everything moved to ``engine.cron``; these names stay importable for
code written against them (``from engine.scheduler import register``)."""

from engine.cron import (
    CRON_NAME_RE,
    CronDef,
    list_entries,
    next_fire_times,
    register,
    run_now,
    set_paused,
    tick,
    tick_op,
    unregister,
    validate_cron,
)

__all__ = [
    "CRON_NAME_RE",
    "CronDef",
    "list_entries",
    "next_fire_times",
    "register",
    "run_now",
    "set_paused",
    "tick",
    "tick_op",
    "unregister",
    "validate_cron",
]
