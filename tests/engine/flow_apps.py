"""A handler for the ``--pool process`` test of ``RateLimited``: module level, so a child
process can import it. It counts its calls in Redis (``REDIQ_TEST_URL``)."""

from __future__ import annotations

import os
from typing import Any

import redis

from engine import RateLimited
from engine.registry import Registry

flow = Registry()


@flow.task("limited_once", queue="flowpool", max_retry=0)
def limited_once(ctx: Any, payload: Any) -> str:
    r = redis.Redis.from_url(os.environ["REDIQ_TEST_URL"])
    calls = r.incr(f"test:calls:{ctx.id}")
    r.close()
    if calls == 1:
        raise RateLimited("429 from the child", retry_after=0.3)
    return "ok"
