"""rediq against the redis-py calling conventions it declares support for (``redis>=5.2``).

redis-py 5.x's ``Retry.call_with_retry`` takes ``(do, fail)``; 6.x added ``is_retryable`` and
``with_failure_count``. rediq's retry classes used to delegate to ``super()`` with the 6.x
arguments, so under redis-py 5.3.1 (what arq and taskiq-redis pin) the first command failed with
``TypeError``. The floors CI step (.ci/floors) installs the real 5.2 release; these tests put the
5.x base method in place on whatever redis-py is installed, so they run in the default suite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from time import sleep
from typing import Any

import pytest
import redis.asyncio.retry
import redis.retry
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.client import AsyncClient, Client
from engine.connection import parse_url


def _five_sync(self: Any, do: Callable[[], Any], fail: Callable[[Exception], Any]) -> Any:
    """redis-py 5.3.1's ``Retry.call_with_retry``, verbatim apart from the names."""
    self._backoff.reset()
    failures = 0
    while True:
        try:
            return do()
        except self._supported_errors as error:
            failures += 1
            fail(error)
            if self._retries >= 0 and failures > self._retries:
                raise error
            backoff = self._backoff.compute(failures)
            if backoff > 0:
                sleep(backoff)


async def _five_async(self: Any, do: Callable[[], Awaitable[Any]], fail: Callable[[Exception], Any]) -> Any:
    self._backoff.reset()
    failures = 0
    while True:
        try:
            return await do()
        except self._supported_errors as error:
            failures += 1
            await fail(error)
            if self._retries >= 0 and failures > self._retries:
                raise error


@pytest.fixture
def redis_py_5_retry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(redis.retry.Retry, "call_with_retry", _five_sync)
    monkeypatch.setattr(redis.asyncio.retry.Retry, "call_with_retry", _five_async)
    yield


def test_sync_client_round_trips_with_redis_py_5_retry(redis_url: str, redis_py_5_retry: None) -> None:
    with Client(redis_url) as client:
        result = client.enqueue("order:validate", {"n": 1}, queue="floors")
        info = client.get_task(result.id, "floors")
    assert info is not None and info.id == result.id


async def test_async_client_round_trips_with_redis_py_5_retry(redis_url: str, redis_py_5_retry: None) -> None:
    async with AsyncClient(redis_url) as client:
        result = await client.enqueue("order:validate", {"n": 1}, queue="floors")
        info = await client.get_task(result.id, "floors")
    assert info is not None and info.id == result.id


def test_sync_retry_accepts_both_conventions_and_still_retries() -> None:
    """The loop itself: a transient error is retried (old and new call shapes), and the
    failure count reaches a handler that asked for it."""
    retry = parse_url("redis://127.0.0.1:1/0").sync().get_retry()
    outcomes: list[Any] = [RedisConnectionError("blip"), "ok"]

    def do() -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry.call_with_retry(do, lambda _error: None) == "ok"
    counts: list[int] = []
    outcomes[:] = [RedisConnectionError("blip"), "again"]
    got = retry.call_with_retry(do, lambda _e, n: counts.append(n), None, True)
    assert got == "again" and counts == [1]
