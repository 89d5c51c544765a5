"""Redis URLs parsed in one place, and clients built from them.

Supported: ``redis://``, ``rediss://`` (TLS; ``?ssl_ca_certs=…&ssl_certfile=…&ssl_keyfile=…``),
``unix:///path.sock``, ``redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db]`` and
``redis+cluster://[user:pass@]host:port[,host:port…]``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import RedisError as RedisError  # re-exported: the CLI imports no redis
from redis.retry import Retry

from engine.errors import InvalidUrl

Mode = Literal["standalone", "sentinel", "cluster"]
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")

TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
CERT_REQS = ("none", "optional", "required")

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
    password: str | None = field(default=None, repr=False)  # never in reprs or logs
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict, repr=False)  # may hold sentinel_password
    unix_path: str = ""

    def __repr__(self) -> str:
        return f"RedisTarget({self.display!r}, mode={self.mode!r})"

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
        for key in TLS_OPTIONS:
            if key in self.options:
                value: Any = self.options[key]
                if key == "ssl_check_hostname":
                    value = _flag(value)
                elif key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") and not os.path.isfile(value):
                    raise InvalidUrl(f"{key} file {value!r} does not exist (in Redis URL {self.display!r})")
                kwargs[key] = value
        return kwargs

    def _sentinel_kwargs(self) -> dict[str, Any]:
        return {
            "username": self.options.get("sentinel_username"),
            "password": self.options.get("sentinel_password"),
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": 2.0,
        }

    def sync(self) -> Any:
        """A synchronous client (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""
        return self._client(_SYNC)

    def aio(self) -> Any:
        """An asyncio client (``redis.asyncio.Redis`` or its cluster/sentinel variants)."""
        return self._client(_ASYNC)

    def _client(self, flavour: _Flavour) -> Any:
        retry = flavour.retry()(ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), RETRIES)
        if self.mode == "standalone":
            return flavour.standalone(
                retry=retry, **self._standalone(), **self._common(), **self._tls_kwargs()
            )
        shared = {
            "username": self.username,
            "password": self.password,
            "retry": retry,
            **self._common(),
            **self._tls_kwargs(),
        }
        if self.mode == "cluster":
            node = flavour.cluster_node()
            return flavour.cluster()(startup_nodes=[node(h, p) for h, p in self.hosts], **shared)
        sentinel = flavour.sentinel()(
            list(self.hosts), socket_timeout=SOCKET_TIMEOUT_S, sentinel_kwargs=self._sentinel_kwargs()
        )
        return sentinel.master_for(self.service, db=self.db, **shared)

    def _standalone(self) -> dict[str, Any]:
        """Connection arguments of a standalone server, built from the parsed URL (not
        ``from_url``, which would pass query options through as untyped strings)."""
        if self.unix_path:
            return {
                "unix_socket_path": self.unix_path,
                "db": self.db,
                "username": self.username,
                "password": self.password,
            }
        host, port = self.hosts[0]
        return {
            "host": host,
            "port": port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
        }


def _hopeless(error: Exception) -> bool:
    """Errors that no reconnect can cure: wrong credentials (redis-py makes them connection
    errors, so they would be retried with backoff) and a certificate the CA does not vouch for."""
    text = str(error).lower()
    return isinstance(error, AuthenticationError) or "certificate verify failed" in text


# redis-py 5.x defines ``call_with_retry(do, fail)``; 6.x added ``is_retryable`` and
# ``with_failure_count`` and passes them from its own code. Delegating to ``super()`` with the
# 6.x arguments broke every call on 5.x (``TypeError: … takes 3 positional arguments but 5 were
# given``), so both classes below run the loop themselves, accept either calling convention, and
# read only the attributes (``_backoff``, ``_retries``, ``_supported_errors``) that every
# redis-py from 5.0 to 8.x sets in ``Retry.__init__``.


def _report_failure(
    fail: Callable[..., Any], error: Exception, failures: int, with_failure_count: bool
) -> Any:
    return fail(error, failures) if with_failure_count else fail(error)


class _SyncRetry(Retry):
    """``Retry`` that fails at once on :func:`_hopeless` errors instead of backing off."""

    def call_with_retry(
        self,
        do: Callable[[], Any],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        self._backoff.reset()
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if _hopeless(error) or (is_retryable is not None and not is_retryable(error)):
                    raise
                failures += 1
                _report_failure(fail, error, failures, with_failure_count)
                if self._retries >= 0 and failures > self._retries:
                    raise
                pause = self._backoff.compute(failures)
                if pause > 0:
                    time.sleep(pause)


@cache
def _async_retry_class() -> type[Any]:
    # start-up time: asyncio clients only (the class is built once, cached)
    from redis.asyncio.retry import Retry as AsyncRetry

    class AsyncNoHopelessRetry(AsyncRetry):
        async def call_with_retry(
            self,
            do: Callable[[], Awaitable[Any]],
            fail: Callable[..., Any],
            is_retryable: Callable[[Exception], bool] | None = None,
            with_failure_count: bool = False,
        ) -> Any:
            self._backoff.reset()
            failures = 0
            while True:
                try:
                    return await do()
                except self._supported_errors as error:
                    if _hopeless(error) or (is_retryable is not None and not is_retryable(error)):
                        raise
                    failures += 1
                    # redis-py's own handlers are coroutines; ours may be plain callables
                    outcome = _report_failure(fail, error, failures, with_failure_count)
                    if inspect.isawaitable(outcome):
                        await outcome
                    if self._retries >= 0 and failures > self._retries:
                        raise
                    pause = self._backoff.compute(failures)
                    if pause > 0:
                        await asyncio.sleep(pause)

    return AsyncNoHopelessRetry


_SCRIPT_COMMANDS = ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO")


def _script_keys(args: tuple[Any, ...]) -> list[Any] | None:
    """The keys of a script or function call (``EVALSHA sha numkeys key… arg…``, ``FCALL
    function numkeys key… arg…``), read from the command line; None for any other command."""
    if len(args) > 2 and str(args[0]).upper() in _SCRIPT_COMMANDS:
        return list(args[3 : 3 + int(args[2])])
    return None


@cache
def _cluster_class() -> type[Any]:
    """``RedisCluster`` that routes EVALSHA and FCALL by their declared keys.

    redis-py's sync cluster pipeline finds a script's keys with ``COMMAND GETKEYS`` sent to the
    client's *default node* (its non-pipelined path special-cases EVAL/EVALSHA, not FCALL). That
    costs a round trip per call, and once the default node dies every pipelined script call
    fails with "connection refused" even after a replica took over — the client never
    recovers. Reading the keys from the command line fixes both.
    """
    # start-up time: only for a cluster URL (the class is built once, cached)
    from redis.cluster import RedisCluster

    class ScriptAwareCluster(RedisCluster):
        def _get_command_keys(self, *args: Any) -> Any:
            keys = _script_keys(args)
            return keys if keys is not None else super()._get_command_keys(*args)

        def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
            pipe = super().pipeline(transaction, shard_hint)
            generic = pipe._get_command_keys

            def command_keys(*args: Any) -> Any:
                keys = _script_keys(args)
                return keys if keys is not None else generic(*args)

            pipe._get_command_keys = command_keys
            return pipe

    return ScriptAwareCluster


@cache
def _async_cluster_class() -> type[Any]:
    """asyncio ``RedisCluster`` that routes FCALL by its declared keys: redis-py asks the
    server (``COMMAND GETKEYS``, a round trip) for every FCALL, piped or not."""
    # start-up time: only for a cluster URL (the class is built once, cached)
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    class ScriptAwareAsyncCluster(AsyncRedisCluster):
        async def _determine_slot(self, command: str, *args: Any) -> int:
            keys = _script_keys((command, *args))
            if keys:
                slots = {self.keyslot(key) for key in keys}
                if len(slots) == 1:
                    return slots.pop()
            return await super()._determine_slot(command, *args)

    return ScriptAwareAsyncCluster


def members_quickly(url: str, key: str, timeout_s: float) -> list[str]:
    """The members of one set, read with short timeouts and redis-py's defaults otherwise: shell
    completion must answer at once or not at all (it never retries and never waits 10 s)."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
    )
    try:
        return [str(member) for member in client.smembers(key)]
    finally:
        client.close()


def mask_url(url: str) -> str:
    """``url`` with the password (between the user's ':' and the last '@' of the authority)
    replaced by ``***``; works for malformed URLs too, so error messages never leak it."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    authority_end = len(rest)
    for stop in "/?#":
        pos = rest.find(stop, rest.rfind("@") + 1 if "@" in rest else 0)
        if pos != -1:
            authority_end = min(authority_end, pos)
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        authority = f"{user}:***@{hosts}"
    masked = authority + _SECRET_OPTION.sub(r"\1***", tail)
    return f"{scheme}{sep}{masked}" if sep else masked


_SECRET_OPTION = re.compile(r"([?&](?:sentinel_)?password=)[^&#]*")


@dataclass(frozen=True)
class _Flavour:
    """The client classes of one flavour, sync or asyncio. Each is looked up when a client is
    built: the cluster and sentinel modules load only for such a URL (start-up time)."""

    retry: Callable[[], type[Any]]
    cluster: Callable[[], type[Any]]
    cluster_node: Callable[[], type[Any]]
    sentinel: Callable[[], type[Any]]
    standalone: type[Any]


def _sync_cluster_node() -> type[Any]:
    # start-up time: redis's cluster module loads only for a cluster URL
    from redis.cluster import ClusterNode

    return ClusterNode


def _sync_sentinel() -> type[Any]:
    # start-up time: redis's sentinel module loads only for a sentinel URL
    from redis.sentinel import Sentinel

    return Sentinel


def _async_cluster_node() -> type[Any]:
    # start-up time: redis's cluster module loads only for a cluster URL
    from redis.asyncio.cluster import ClusterNode

    return ClusterNode


def _async_sentinel() -> type[Any]:
    # start-up time: redis's sentinel module loads only for a sentinel URL
    from redis.asyncio.sentinel import Sentinel

    return Sentinel


_SYNC = _Flavour(lambda: _SyncRetry, _cluster_class, _sync_cluster_node, _sync_sentinel, redis.Redis)
_ASYNC = _Flavour(
    _async_retry_class, _async_cluster_class, _async_cluster_node, _async_sentinel, aioredis.Redis
)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _split_host(item: str) -> tuple[str, str]:
    if item.startswith("["):  # IPv6 literal: [::1]:6379
        host, _, after = item[1:].partition("]")
        return host, after.removeprefix(":")
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        return host, port
    return item, ""


def _hosts(netloc_hosts: str, url: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for raw in netloc_hosts.split(","):
        item = raw.strip()
        if not item:
            continue
        host, port_text = _split_host(item)
        if not port_text:
            port_text = str(default_port)
        try:
            port = int(port_text)
        except ValueError:
            raise InvalidUrl(f"bad port {port_text!r} in Redis URL {mask_url(url)!r}") from None
        if not 0 < port < 65536:
            raise InvalidUrl(f"port {port} out of range 1..65535 in Redis URL {mask_url(url)!r}")
        if not host:
            raise InvalidUrl(f"no host before port {port} in Redis URL {mask_url(url)!r}")
        hosts.append((host, port))
    if not hosts:
        raise InvalidUrl(f"no host in Redis URL {mask_url(url)!r}")
    return tuple(hosts)


def _options(query: str, url: str, tls: bool, allowed: tuple[str, ...]) -> dict[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True))
    for key, value in options.items():
        if key in TLS_OPTIONS and not tls:
            raise InvalidUrl(f"option {key!r} needs a TLS URL (rediss://…): {mask_url(url)!r}")
        if key not in allowed:
            raise InvalidUrl(
                f"unknown option {key!r} in Redis URL {mask_url(url)!r} "
                f"({'known: ' + ', '.join(allowed) if allowed else 'this scheme takes none'})"
            )
        if key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") and not value:
            raise InvalidUrl(f"option {key!r} needs a file path in Redis URL {mask_url(url)!r}")
        if key == "ssl_cert_reqs" and value not in CERT_REQS:
            raise InvalidUrl(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}, got {value!r}")
    if ("ssl_certfile" in options) != ("ssl_keyfile" in options):
        raise InvalidUrl(f"ssl_certfile and ssl_keyfile go together in Redis URL {mask_url(url)!r}")
    return options


def parse_url(url: str) -> RedisTarget:
    """Parse and check a Redis URL; raises ``InvalidUrl`` (one line, password masked)."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidUrl(f"not a Redis URL: {mask_url(str(url))!r}")
    if any(c in url for c in "\r\n\t "):
        raise InvalidUrl(f"whitespace in Redis URL {mask_url(url.strip())!r}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidUrl(
            f"unknown scheme {scheme!r} in Redis URL {mask_url(url)!r} (use {', '.join(SCHEMES)})"
        )
    tls = scheme.startswith("rediss")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    hostpart, _, query = hostpart.partition("?")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    if scheme == "unix":
        path = unquote(hostpart)
        if not path.startswith("/") or path == "/":
            raise InvalidUrl(
                f"unix URL without an absolute socket path: {mask_url(url)!r} (unix:///path.sock)"
            )
        options = _options(query, url, False, ("db",))
        db = _db(options.pop("db", "0"), url)
        return RedisTarget(url, "standalone", (), "", db, username, password, False, options, unix_path=path)
    netloc_hosts, _, path = hostpart.partition("/")
    tls_opts = TLS_OPTIONS if tls else ()
    if "sentinel" in scheme:
        options = _options(query, url, tls, (*tls_opts, *SENTINEL_OPTIONS))
        hosts = _hosts(netloc_hosts, url, 26379)
        segments = [s for s in path.split("/") if s]
        if not segments:
            raise InvalidUrl(f"sentinel URL needs a service name: {mask_url(url)!r} (…/mymaster)")
        if len(segments) > 2:
            raise InvalidUrl(f"sentinel URL path must be /service[/db]: {mask_url(url)!r}")
        db = _db(segments[1] if len(segments) > 1 else "0", url)
        return RedisTarget(url, "sentinel", hosts, unquote(segments[0]), db, username, password, tls, options)
    options = _options(query, url, tls, tls_opts)
    hosts = _hosts(netloc_hosts, url, 6379)
    if "cluster" in scheme:
        if path.strip("/") not in ("", "0"):
            raise InvalidUrl(
                f"Redis Cluster has only database 0, got /{path.strip('/')} in {mask_url(url)!r}"
            )
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
