"""A cancellation lost inside redis-py's pub/sub read, on purpose and every time.

A ``cancel()`` that lands as the read's own timeout expires can come back as that timeout, which
``PubSub.get_message`` reports as "no message" (redis-py #2551; seen in CI as a console and a
worker whose subscription outlived them). Rare in the wild; here every cancel is lost, so a
test shows what ends a subscription without one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.client import PubSub


def lose_pubsub_cancels(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch ``PubSub.get_message`` to swallow every cancellation; returns a one-item list
    counting the cancellations lost."""
    lost = [0]
    original = PubSub.get_message

    async def get_message(self: PubSub, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except asyncio.CancelledError:
            lost[0] += 1
            return None

    monkeypatch.setattr(PubSub, "get_message", get_message)
    return lost
