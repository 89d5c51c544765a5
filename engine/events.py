"""State-transition events: a versioned pydantic schema and subscribers.

Scripts publish one compact JSON message per transition batch on the queue's channel
(``<prefix>:{<queue>}:events``), or, for the events that may mean work for a worker
(``keys.ARRIVAL_EVENTS``: ``pending``, ``resumed``), on its arrivals channel
(``...:events:arrivals``): a worker listens only there, and so does not receive the events of
its own starts and acks (a tenth of its CPU per task in a backlog). Observers listen to both.
Pub/sub is a hint, not a log: after every (re)connect a subscriber yields a ``resync`` event
so that listeners re-read state with a full poll.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.keys import ARRIVALS
from engine.ops import Settings

EVENT_VERSION = 1
RESYNC = "resync"
TICK_S = 1.0
"""How long a subscriber waits for a message before it checks whether its owner still runs."""


class Event(BaseModel):
    """One transition batch. ``event`` is the new state (``pending``, ``active``, ``completed``,
    ``retry``, ``dead``, ``cancelled``, ...) or ``progress``, ``paused``, ``resumed``,
    ``deleted``, ``cancel_requested``; ``resync`` is synthesised by subscribers."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    version: int = Field(default=EVENT_VERSION, alias="v")
    event: str = Field(alias="e")
    queue: str = ""
    ids: tuple[str, ...] = ()
    at_ms: int = Field(default=0, alias="t")
    percent: float | None = Field(default=None, alias="p")
    message: str | None = Field(default=None, alias="m")
    why: str | None = None


def queue_of_channel(settings: Settings, channel: str) -> str:
    prefix = settings.prefix + ":{"
    for suffix in ("}:events", "}:events" + ARRIVALS):
        if channel.startswith(prefix) and channel.endswith(suffix):
            return channel[len(prefix) : -len(suffix)]
    return ""


def parse(settings: Settings, channel: str, data: Any) -> Event | None:
    """Decode one message; malformed messages (a buggy publisher) are dropped, not raised."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            return None
        ids = raw.get("ids")
        raw["ids"] = tuple(str(i) for i in ids) if isinstance(ids, list) else ()
        return Event.model_validate({**raw, "queue": queue_of_channel(settings, channel)})
    except (ValueError, TypeError, ValidationError):
        return None


def _channels(
    settings: Settings, queues: list[str] | None, arrivals_only: bool = False
) -> tuple[list[str], list[str]]:
    ks = settings.keyspace
    if queues:
        qks = [ks.queue(q) for q in queues]
        return [qk.arrivals for qk in qks] + ([] if arrivals_only else [qk.events for qk in qks]), []
    return [], [ks.arrivals_pattern] + ([] if arrivals_only else [ks.events_pattern])


async def subscribe(
    settings: Settings,
    redis: Any,
    queues: list[str] | None = None,
    max_backoff: float = 5.0,
    arrivals_only: bool = False,
    running: Callable[[], bool] = lambda: True,
) -> AsyncIterator[Event]:
    """Events from the given queues (default: all), reconnecting with jittered backoff.
    Yields ``Event(event='resync')`` after each (re)connect. ``arrivals_only``: only the
    events of ``keys.ARRIVAL_EVENTS`` (what a worker needs to know). Ends once ``running()``
    is false, checked at least every ``TICK_S``: the owner's stop ends the subscription even
    when a cancellation is lost in the client's read timeout (redis-py #2551), which left a
    stopped worker's or a closed console's subscription running for good."""
    channels, patterns = _channels(settings, queues, arrivals_only)
    backoff = 0.1
    while running():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            if channels:
                await pubsub.subscribe(*channels)
            if patterns:
                await pubsub.psubscribe(*patterns)
            backoff = 0.1
            yield Event(e=RESYNC)
            while running():
                message = await pubsub.get_message(timeout=TICK_S)
                if message is None:
                    continue
                event = parse(settings, message.get("channel", ""), message.get("data"))
                if event is not None:
                    yield event
        except (OSError, ConnectionError) as exc:  # redis errors subclass these via RedisError?
            del exc
        except Exception as exc:  # noqa: BLE001 - any redis error means reconnect
            if exc.__class__.__module__.split(".")[0] != "redis":
                raise
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001 - the connection is already gone
                pass
        if not running():
            return
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(max_backoff, backoff * 2)


def subscribe_sync(
    settings: Settings, redis: Any, queues: list[str] | None = None, timeout: float | None = None
) -> Generator[Event, None, None]:
    """Blocking twin of ``subscribe`` (stops after ``timeout`` seconds when given)."""
    channels, patterns = _channels(settings, queues)
    deadline = None if timeout is None else time.monotonic() + timeout
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        if channels:
            pubsub.subscribe(*channels)
        if patterns:
            pubsub.psubscribe(*patterns)
        yield Event(e=RESYNC)
        while deadline is None or time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            event = parse(settings, message.get("channel", ""), message.get("data"))
            if event is not None:
                yield event
    finally:
        pubsub.close()
