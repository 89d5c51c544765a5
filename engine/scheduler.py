"""Cron entries (filled in by the workflows work; this stub lists none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.backend import Op, cmd
from engine.ops import Settings

if TYPE_CHECKING:
    from engine.inspect import CronEntryInfo


def list_entries(settings: Settings) -> Op[list[CronEntryInfo]]:
    yield cmd("HLEN", settings.keyspace.cron)
    return []
