"""Cron expressions refused at registration, event messages parsed or dropped, and the
doctor's placement order: workflow plumbing that needs no server."""

from __future__ import annotations

import pytest

from engine import doctor, events
from engine.errors import InvalidCron
from engine.ops import Settings
from engine.registry import Registry


def test_invalid_cron_is_refused_at_registration() -> None:
    registry = Registry()
    with pytest.raises(InvalidCron, match="has 4 fields, expected 5"):
        registry.cron("sweep", "0 * * *", "order:timeout")
    with pytest.raises(InvalidCron, match="not valid"):
        registry.cron("sweep", "61 * * * *", "order:timeout")
    with pytest.raises(InvalidCron, match="unknown timezone"):
        registry.cron("sweep", "0 * * * *", "order:timeout", timezone="Mars/Olympus")


def test_malformed_event_messages_are_dropped() -> None:
    s = Settings()
    assert events.parse(s, "rediq:{q}:events", "not json") is None
    assert events.parse(s, "rediq:{q}:events", "[1,2]") is None
    e = events.parse(s, "rediq:{q}:events", '{"v":1,"e":"dead","ids":["a"],"t":5}')
    assert e is not None and e.queue == "q" and e.event == "dead"


def test_placement_keys_cover_every_state() -> None:
    assert sorted(doctor.PLACE_ORDER) == sorted(doctor.STATE_SETS)
