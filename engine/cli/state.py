"""The state of one CLI invocation: global flags, the lazily built config and client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from engine import embedded
from engine.client import Client
from engine.config import RediqConfig, load_config
from engine.connection import members_quickly, parse_url


@dataclass
class CliState:
    """Global flags and the lazily built config and client of one invocation."""

    redis_url: str | None = None
    prefix: str | None = None
    _config: RediqConfig | None = None
    _client: Client | None = None

    def flags(self, **extra: Any) -> dict[str, Any]:
        return {"redis_url": self.redis_url, "rediq_prefix": self.prefix, **extra}

    def config(self) -> RediqConfig:
        if self._config is None:
            self._config = load_config(**self.flags())
        return self._config

    def url(self) -> str:
        return resolve_url(self.config())

    def client(self) -> Client:
        if self._client is None:
            config = self.config()
            self._client = Client(parse_url(resolve_url(config)), settings=config.engine_settings())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def resolve_url(config: RediqConfig) -> str:
    """The configured URL, else the embedded server's (started on demand, announced once)."""
    if config.redis_url:
        parse_url(config.redis_url)  # fail early, one line, on a malformed URL
        return config.redis_url
    url = embedded.ensure_server()
    embedded.announce(url)
    return url


pass_state = click.make_pass_decorator(CliState, ensure=True)


def complete_queue(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of queue names: read from Redis with short timeouts, never starting the
    embedded server, and silent on any failure."""
    try:
        root = ctx.find_root().params
        config = load_config(redis_url=root.get("redis_url"), rediq_prefix=root.get("prefix"))
        url = config.redis_url or embedded.status().url
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            return []
        names = members_quickly(url, config.engine_settings().keyspace.queues, timeout_s=0.5)
    except Exception:  # noqa: BLE001 - completion must never print an error
        return []
    return sorted(n for n in names if n.startswith(incomplete))
