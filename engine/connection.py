"""Redis URLs parsed in one place, and clients built from them.

Supported: ``redis://``, ``rediss://`` (TLS; ``?ssl_ca_certs=…&ssl_certfile=…&ssl_keyfile=…``),
``unix:///path.sock``, ``redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db]`` and
``redis+cluster://[user:pass@]host:port[,host:port…]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from engine.errors import InvalidUrl

Mode = Literal["standalone", "sentinel", "cluster"]
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")

# Reconnects back off with jitter so that many workers do not hammer a restarting server.
RETRIES = 6
BACKOFF_CAP_S = 2.0
BACKOFF_BASE_S = 0.05
SOCKET_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RedisTarget:
    url: str
    mode: Mode
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The URL with any password masked, safe to print and log."""
        return mask_url(self.url)

    def _common(self) -> dict[str, Any]:
        return {
            "decode_responses": True,
            "encoding_errors": "replace",
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": 5.0,
            "health_check_interval": 15,
        }

    def _tls_kwargs(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        kwargs: dict[str, Any] = {"ssl": True}
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"):
            if key in self.options:
                value: Any = self.options[key]
                if key == "ssl_check_hostname":
                    value = value.lower() in ("1", "true", "yes")
                kwargs[key] = value
        return kwargs

    def sync(self) -> Any:
        """A synchronous client (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""
        retry = Retry(ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), RETRIES)
        if self.mode == "cluster":
            from redis.cluster import ClusterNode, RedisCluster

            return RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.hosts],
                username=self.username,
                password=self.password,
                retry=retry,
                **self._common(),
                **self._tls_kwargs(),
            )
        if self.mode == "sentinel":
            from redis.sentinel import Sentinel

            sentinel = Sentinel(
                list(self.hosts),
                socket_timeout=SOCKET_TIMEOUT_S,
                sentinel_kwargs={"password": self.options.get("sentinel_password")},
            )
            return sentinel.master_for(
                self.service,
                db=self.db,
                username=self.username,
                password=self.password,
                retry=retry,
                **self._common(),
                **self._tls_kwargs(),
            )
        return redis.Redis.from_url(self.url, retry=retry, **self._common())

    def aio(self) -> Any:
        """An asyncio client (``redis.asyncio.Redis`` or its cluster/sentinel variants)."""
        from redis.asyncio.retry import Retry as AsyncRetry

        retry = AsyncRetry(ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), RETRIES)
        if self.mode == "cluster":
            from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
            from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

            return AsyncRedisCluster(
                startup_nodes=[AsyncClusterNode(h, p) for h, p in self.hosts],
                username=self.username,
                password=self.password,
                retry=retry,
                **self._common(),
                **self._tls_kwargs(),
            )
        if self.mode == "sentinel":
            from redis.asyncio.sentinel import Sentinel as AsyncSentinel

            sentinel = AsyncSentinel(
                list(self.hosts),
                socket_timeout=SOCKET_TIMEOUT_S,
                sentinel_kwargs={"password": self.options.get("sentinel_password")},
            )
            return sentinel.master_for(
                self.service,
                db=self.db,
                username=self.username,
                password=self.password,
                retry=retry,
                **self._common(),
                **self._tls_kwargs(),
            )
        return aioredis.Redis.from_url(self.url, retry=retry, **self._common())


def mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _hosts(netloc_hosts: str, url: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in netloc_hosts.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not port_text:
            host, port_text = item, str(default_port)
        try:
            port = int(port_text)
        except ValueError:
            raise InvalidUrl(f"bad port {port_text!r} in Redis URL {mask_url(url)!r}") from None
        if not 0 < port < 65536 or not host:
            raise InvalidUrl(f"bad host or port {item!r} in Redis URL {mask_url(url)!r}")
        hosts.append((host.strip("[]"), port))
    if not hosts:
        raise InvalidUrl(f"no host in Redis URL {mask_url(url)!r}")
    return tuple(hosts)


def parse_url(url: str) -> RedisTarget:
    """Parse and check a Redis URL; raises ``InvalidUrl`` (one line, password masked)."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidUrl(f"not a Redis URL: {mask_url(str(url))!r}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidUrl(f"unknown scheme {scheme!r} in Redis URL {mask_url(url)!r}")
    tls = scheme.startswith("rediss")
    if scheme == "unix":
        path = urlsplit(url).path
        if not path:
            raise InvalidUrl(f"unix URL without a socket path: {mask_url(url)!r}")
        return RedisTarget(url=url, mode="standalone", options=dict(parse_qsl(urlsplit(url).query)))
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    hostpart, _, query = hostpart.partition("?")
    netloc_hosts, _, path = hostpart.partition("/")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    options = dict(parse_qsl(query))
    hosts = _hosts(netloc_hosts, url, 26379 if "sentinel" in scheme else 6379)
    if "sentinel" in scheme:
        segments = [s for s in path.split("/") if s]
        if not segments:
            raise InvalidUrl(f"sentinel URL needs a service name: {mask_url(url)!r} (…/mymaster)")
        db = _db(segments[1] if len(segments) > 1 else "0", url)
        return RedisTarget(url, "sentinel", hosts, segments[0], db, username, password, tls, options)
    if "cluster" in scheme:
        return RedisTarget(url, "cluster", hosts, "", 0, username, password, tls, options)
    if len(hosts) > 1:
        raise InvalidUrl(
            f"several hosts in a plain Redis URL {mask_url(url)!r}: use redis+cluster:// or redis+sentinel://"
        )
    db = _db(path.strip("/") or "0", url)
    return RedisTarget(url, "standalone", hosts, "", db, username, password, tls, options)


def _db(text: str, url: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise InvalidUrl(f"bad database number {text!r} in Redis URL {mask_url(url)!r}") from None
    if not 0 <= db <= 15:
        raise InvalidUrl(f"database number must be 0..15, got {db} in {mask_url(url)!r}")
    return db
