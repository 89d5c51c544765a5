"""rediq for this project: one ``Client`` built from Django settings, and enqueue on commit.

A task enqueued inside a transaction that later rolls back would run against rows that never
existed; ``enqueue_on_commit`` sends it only once the transaction commits (at once in
autocommit), and drops it on rollback.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction

from engine import Client, Settings, TaskHandle
from shop.tasks import registry

M = TypeVar("M")


def engine_settings() -> Settings:
    return Settings(prefix=settings.REDIQ_PREFIX)


@cache
def client() -> Client:
    """The process's client (thread-safe: redis-py pools its connections)."""
    return Client(settings.REDIQ_URL, settings=engine_settings(), registry=registry)


def enqueue_on_commit(
    task: TaskHandle[M, Any], payload: M, *, using: str | None = None, **options: Any
) -> None:
    """Enqueue ``task`` when the current transaction on ``using`` commits; nothing on rollback.

    The callback runs after the commit: if Redis is unreachable then, the error reaches the
    request (a 500) while the rows stay committed. Where a lost task is unacceptable, write an
    outbox row in the transaction and enqueue from it instead.
    """
    transaction.on_commit(lambda: task.enqueue(payload, client=client(), **options), using=using)


def _settings_changed(*, setting: str, **_: Any) -> None:
    # override_settings in tests (or a reload) must not keep a client for the old URL/prefix
    if setting.startswith("REDIQ_") and client.cache_info().currsize:
        client().close()
        client.cache_clear()


setting_changed.connect(_settings_changed)
