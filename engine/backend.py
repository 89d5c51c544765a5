"""The only place that talks to Redis.

Operations (``engine.ops``) are generators that yield ``Call``/``Batch`` requests and receive
the replies; ``SyncBackend`` and ``AsyncBackend`` drive them. So every operation is written
once and works for ``Client`` and ``AsyncClient`` alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    NoPermissionError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import lua
from engine.deadlines import Deadlines
from engine.errors import AuthFailed, ConnectionFailed, ReadOnlyError
from engine.held_connection import AsyncHeldConnection, HeldConnection
from engine.lua import ScriptMode

_hiredis_pack: Any
try:  # redis-py's asyncio connections pack commands in Python even when hiredis is installed
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency (redis[hiredis])
    _hiredis_pack = None

T = TypeVar("T")
_PACKING: dict[type, type] = {}


def _pack_in_one_call(args: tuple[Any, ...], replace: bool) -> list[bytes] | None:
    """The command packed by one hiredis call, or None when redis-py's own packer must do it:
    a command name with a space ('SCRIPT LOAD'), an argument hiredis refuses by type (None,
    bool: redis-py raises its usual error), or text UTF-8 cannot encode (a lone surrogate)
    under a strict encoding policy. Under ``encoding_errors="replace"`` (the engine's clients)
    such text becomes '?', as redis-py's Python packer does."""
    first = args[0] if args else None
    if type(first) is not str or " " in first:
        return None
    try:
        return [_hiredis_pack(args)]
    except UnicodeEncodeError:
        if not replace:
            return None
        return [_hiredis_pack(tuple(a.encode("utf-8", "replace") if type(a) is str else a for a in args))]
    except TypeError:
        return None


class _HiredisPacker:
    """Packs a sync command with one hiredis call. redis-py's own hiredis serializer first walks
    every argument in a Python generator (more than the packing itself costs on a 1,000-task
    ``enqueue_many``) and lets a lone surrogate escape as ``UnicodeEncodeError``."""

    def __init__(self, replace: bool) -> None:
        # only the packer's fallback needs it; looked up when a packer is made
        from redis.connection import HiredisRespSerializer

        self._replace = replace
        self._fallback = HiredisRespSerializer()

    def pack(self, *args: Any) -> list[bytes]:
        packed = _pack_in_one_call(args, self._replace)
        return packed if packed is not None else self._fallback.pack(*args)


def use_hiredis_packer(client: Any) -> bool:
    """Make a client the engine created pack each command with one hiredis (C) call: redis-py's
    asyncio connections pack in Python even when hiredis is installed, and its sync ones walk
    every argument in Python first; either costs several times more per argument on the
    worker's hot path and in a batch enqueue.

    Only for a plain (or Sentinel) connection pool with UTF-8 encoding (what ``RedisTarget``
    builds); a cluster client keeps redis-py's packers. Text UTF-8 cannot encode is replaced,
    as the ``encoding_errors="replace"`` of those clients asks."""
    pool = getattr(client, "connection_pool", None)
    if _hiredis_pack is None or pool is None or not hasattr(pool, "connection_class"):
        return False
    kwargs = getattr(pool, "connection_kwargs", {})
    if str(kwargs.get("encoding", "utf-8")).lower() not in ("utf-8", "utf8"):
        return False
    replace = kwargs.get("encoding_errors") == "replace"
    if isinstance(client, redis.Redis):
        # sync connections take their packer as a constructor argument; the pool passes its
        # connection_kwargs to every connection it opens from now on
        kwargs["command_packer"] = _HiredisPacker(replace)
        return True
    base = pool.connection_class
    packed = _PACKING.get(base)
    if packed is None:

        def pack_command(self: Any, *args: Any) -> list[bytes]:
            # under a strict policy redis-py's packer raises its own error for bad text
            fast = _pack_in_one_call(args, self.encoder.encoding_errors == "replace")
            return fast if fast is not None else base.pack_command(self, *args)

        packed = type(f"Hiredis{base.__name__}", (base,), {"pack_command": pack_command})
        _PACKING[base] = packed
    pool.connection_class = packed
    return True


@dataclass(frozen=True, slots=True)
class Call:
    """One Redis request: a script by name (``script``) or a plain command (``command``).

    For a plain command, ``keys`` may name a key whose Cluster node should run it: a keyless
    command such as ``SCAN`` then runs on the node that holds that key's slot (elsewhere it is
    ignored)."""

    script: str | None = None
    keys: Sequence[str] = ()
    args: Sequence[Any] = ()
    command: tuple[Any, ...] = ()
    best_effort: bool = False
    """In a Batch, an error of this call yields None instead of failing the batch."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Several calls sent in one round trip (a non-transactional pipeline).

    ``streamed``: write the calls one after another and read each reply once the next call is
    on its way, so Redis runs call k while the client packs call k+1 and decodes reply k-1
    (for a few large script calls, such as a big ``enqueue_many`` in chunks). Every call must
    be safe to run twice: a broken connection re-sends the whole batch. Only where ``_Direct``
    allows the calls (not on Cluster, no command whose reply redis-py post-processes);
    otherwise the batch goes as a plain pipeline."""

    calls: list[Call] = field(default_factory=list)
    streamed: bool = False


Request = Call | Batch
Op = Generator[Request, Any, T]


def script_call(name: str, keys: Sequence[str], args: Sequence[Any]) -> Call:
    return Call(script=name, keys=keys, args=args)


def cmd(*command: Any) -> Call:
    return Call(command=command)


# Replies that mean "a failover or resync is under way, try again shortly": the caller sees
# ConnectionFailed, like a refused connection, rather than a raw redis-py error.
TRANSIENT_REPLIES = ("CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "NOREPLICAS", "READONLY")
PUBSUB_LOST = (RedisConnectionError, OSError)
"""What reading a pub/sub connection raises when the connection is lost (the reader
resubscribes); modules above the backend catch it without importing ``redis``."""

TRANSIENT_ERRORS = (ClusterDownError, TryAgainError, SlotNotCoveredError, RedisReadOnlyError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".")


# what a backend turns into the engine's one-line errors (E001, auth, NOPERM, failover replies)
_TRANSLATED = (
    RedisConnectionError,
    RedisTimeoutError,
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    ResponseError,
)


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc) or "NOAUTH" in str(exc):
        return AuthFailed(f"Redis refused the credentials: {_one_line(exc)}")
    if isinstance(exc, NoPermissionError) or "NOPERM" in str(exc):
        return ReadOnlyError(f"Redis denied the command: {_one_line(exc)}")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return ConnectionFailed(f"cannot reach Redis: {_one_line(exc)}")
    if isinstance(exc, TRANSIENT_ERRORS) or str(exc).startswith(TRANSIENT_REPLIES):
        return ConnectionFailed(f"Redis is failing over or not ready: {_one_line(exc)}")
    if isinstance(exc, RedisClusterException) and "cannot be connected" in str(exc):
        return ConnectionFailed(f"cannot reach Redis Cluster: {_one_line(exc)}")
    return exc


def _args(call: Call, mode: ScriptMode) -> tuple[Any, ...]:
    if call.script is None:
        return call.command
    if mode is ScriptMode.FUNCTIONS:
        return lua.fcall_args(call.script, call.keys, call.args)
    s = lua.script(call.script)
    return ("EVALSHA", *lua.evalsha_args(s, list(call.keys), list(call.args)))


def _script_missing(mode: ScriptMode, call: Call, reply: Any) -> bool:
    """Whether ``reply`` says the server lacks the call's script (``NOSCRIPT``) or this
    version's function library (``Function not found``): load it, then send the call again."""
    if call.script is None or not isinstance(reply, ResponseError):
        return False
    return lua.is_function_missing(reply) if mode is ScriptMode.FUNCTIONS else lua.is_noscript(reply)


def _route(client: Any, call: Call) -> dict[str, Any]:
    """``target_nodes`` for a plain command with a routing key, on a cluster client only."""
    if call.keys and hasattr(client, "get_node_from_key"):
        return {"target_nodes": client.get_node_from_key(call.keys[0])}
    return {}


def _unwrap(reply: Any, route: dict[str, Any]) -> Any:
    """redis-py answers a routed SCAN with ``({node: cursor}, keys)``; one node was asked, so
    hand back the plain ``(cursor, keys)`` the operation expects."""
    if route and isinstance(reply, list | tuple) and len(reply) == 2 and isinstance(reply[0], dict):
        cursors = list(reply[0].values())
        if len(cursors) == 1:
            return (cursors[0], reply[1])
    return reply


def _settle(calls: list[Call], results: list[Any]) -> list[Any]:
    """Raise the first error of a batch, except for best-effort calls (which read as None)."""
    for i, r in enumerate(results):
        if isinstance(r, Exception):
            if calls[i].best_effort:
                results[i] = None
            else:
                raise r
    return results


def _first_key(call: Call) -> str | None:
    return call.keys[0] if call.keys else None


class _Direct:
    """Which calls may skip redis-py's command and pipeline layers and go over a pooled
    connection directly: on a plain or Sentinel client (never Cluster, which must route),
    scripts and the commands whose replies redis-py hands back as they are (no response
    callback), so the caller sees the same values. On the worker's hot path this takes about
    30 µs off each round trip here (a one-call batch: ~175 µs to ~145 µs of wall time)."""

    def __init__(self, client: Any) -> None:
        pool = getattr(client, "connection_pool", None)  # a Cluster client has none
        self.pool = pool if pool is not None and hasattr(pool, "get_connection") else None
        self._parsed = {str(name).upper() for name in getattr(client, "response_callbacks", {})}

    def allows(self, calls: Sequence[Call]) -> bool:
        if self.pool is None:
            return False
        for call in calls:
            if call.script is None:
                name = call.command[0] if call.command else None
                if type(name) is not str or name.upper() in self._parsed:
                    return False
        return True


def _read_reply(conn: Any) -> Any:
    try:
        return conn.read_response()
    except ResponseError as exc:  # kept in place, like a pipeline with raise_on_error=False
        return exc


def _exchange(conn: Any, calls: Sequence[Call], streamed: bool, mode: ScriptMode) -> list[Any]:
    """Write the calls and read their replies on one connection: all in one write, or (streamed)
    each call written before the previous one's reply is read."""
    if len(calls) == 1:  # (most round trips: redis-py's pack_commands joins buffers for nothing)
        conn.send_packed_command(conn.pack_command(*_args(calls[0], mode)))
        return [_read_reply(conn)]
    if not streamed:
        conn.send_packed_command(conn.pack_commands([_args(c, mode) for c in calls]))
        return [_read_reply(conn) for _ in calls]
    replies: list[Any] = []
    for i, call in enumerate(calls):
        conn.send_packed_command(conn.pack_command(*_args(call, mode)), check_health=i == 0)
        if i:
            replies.append(_read_reply(conn))
    replies.append(_read_reply(conn))
    return replies


async def _read_reply_async(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc


async def _exchange_async(
    conn: Any, calls: Sequence[Call], streamed: bool, mode: ScriptMode, deadlines: Deadlines
) -> list[Any]:
    """``_exchange`` on an asyncio connection, its time limit kept in ``deadlines`` (one loop
    timer for all of a backend's round trips, engine.deadlines). With a socket timeout, redis-py
    arms a timeout for every reply it reads and runs every write in a task of its own
    (``wait_for``): a fifth to a quarter of a small round trip's client CPU. The connection
    (held by this caller alone) goes without it for the exchange; each reply must come within
    the socket timeout of the previous one instead, or the call fails with redis-py's
    ``TimeoutError`` and the connection is dropped."""
    limit = conn.socket_timeout
    if not limit:
        return await _exchange_steps(conn, calls, streamed, mode, None)
    conn.socket_timeout = None
    deadline = deadlines.start(limit)
    loop = asyncio.get_running_loop()

    def replied() -> None:  # the next reply gets the whole socket timeout again
        deadline.reschedule(loop.time() + limit)

    try:
        async with deadline:
            return await _exchange_steps(conn, calls, streamed, mode, replied)
    except TimeoutError:
        if not deadline.expired():  # (redis-py raises its own TimeoutError, not the builtin)
            raise
        await conn.disconnect(nowait=True)
        where = getattr(conn, "path", "") or f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
        raise RedisTimeoutError(f"Timeout reading from {where}") from None
    finally:
        conn.socket_timeout = limit


async def _exchange_steps(
    conn: Any, calls: Sequence[Call], streamed: bool, mode: ScriptMode, replied: Callable[[], None] | None
) -> list[Any]:
    async def reply() -> Any:
        got = await _read_reply_async(conn)
        if replied is not None:
            replied()
        return got

    if not streamed:
        await conn.send_packed_command(conn.pack_commands([_args(c, mode) for c in calls]))
        return [await reply() for _ in calls]
    replies: list[Any] = []
    for i, call in enumerate(calls):
        await conn.send_packed_command(conn.pack_command(*_args(call, mode)), check_health=i == 0)
        if i:
            replies.append(await reply())
    replies.append(await reply())
    return replies


def _translating(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except _TRANSLATED as exc:
        raise _translate(exc) from exc


def _raise_error(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


class SyncBackend:
    """Runs operations on a sync client. ``script_mode``: how scripts run (default:
    ``$REDIQ_SCRIPT_MODE``, else functions); see ``engine.lua``."""

    def __init__(self, client: redis.Redis, script_mode: ScriptMode | None = None) -> None:
        self.redis = client  # also accepts RedisCluster
        self._direct = _Direct(client)
        self._held = HeldConnection(self._direct.pool) if self._direct.pool is not None else None
        self.script_mode = script_mode if script_mode is not None else lua.script_mode()

    def run(self, op: Op[T]) -> T:
        try:
            request = next(op)
            while True:
                request = op.send(self.execute(request))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def execute(self, request: Request) -> Any:
        try:
            if isinstance(request, Batch):
                return self._batch(request.calls, request.streamed)
            return self._one(request)
        except _TRANSLATED as exc:
            translated = _translate(exc)
            if translated is exc:  # e.g. a client-side cluster error (keys in different slots)
                raise
            raise translated from exc

    # ------------------------------------------------------------ scripts and the library

    def library_status(self) -> list[lua.LibraryStatus]:
        """Whether this version's function library is on each primary (the version check:
        ``FCALL_RO`` of its ``version`` function, which any rediq user may call)."""
        try:
            return self._library_status()
        except _TRANSLATED as exc:
            raise _translate(exc) from exc

    def install_functions(self) -> list[lua.LibraryStatus]:
        """``FUNCTION LOAD`` this version's library on every primary that lacks it; raises
        ``FunctionsMissing`` where this user may not load it."""
        try:
            return self._install_functions()
        except _TRANSLATED as exc:
            raise _translate(exc) from exc

    def prune_functions(self) -> list[tuple[str, str]]:
        """Delete every other version's library (``rediq_*`` but this one) on every primary, once
        no worker of those versions runs; returns the (node, library) pairs deleted."""
        deleted = []
        try:
            for node in lua.primaries(self.redis):
                listed = self.redis.execute_command(
                    "FUNCTION", "LIST", "LIBRARYNAME", "rediq_*", **lua.on(node)
                )
                for name in lua.library_names(listed):
                    if name.startswith(lua.LIBRARY_PREFIX) and name != lua.library().name:
                        self.redis.execute_command("FUNCTION", "DELETE", name, **lua.on(node))
                        deleted.append((lua.node_name(node), name))
        except _TRANSLATED as exc:
            raise _translate(exc) from exc
        return deleted

    def ensure_scripts(self) -> None:
        """Fail fast (a worker at start): in functions mode, this version's library must be on
        every primary, or be loadable by this user; else ``FunctionsMissing``."""
        if self.script_mode is ScriptMode.FUNCTIONS and not all(s.present for s in self.library_status()):
            self.install_functions()

    def _library_status(self) -> list[lua.LibraryStatus]:
        found = []
        for node in lua.primaries(self.redis):
            try:
                self.redis.execute_command(*lua.version_call(), **lua.on(node))
                found.append(lua.LibraryStatus(lua.node_name(node), True))
            except ResponseError as exc:
                if not lua.is_function_missing(exc):
                    raise
                found.append(lua.LibraryStatus(lua.node_name(node), False))
        return found

    def _install_functions(self) -> list[lua.LibraryStatus]:
        source = lua.library().source
        done = []
        for node in lua.primaries(self.redis):
            try:
                self.redis.execute_command("FUNCTION", "LOAD", source, **lua.on(node))
                done.append(lua.LibraryStatus(lua.node_name(node), True, loaded=True))
            except ResponseError as exc:  # NoPermissionError is one
                if lua.is_library_present(exc):
                    done.append(lua.LibraryStatus(lua.node_name(node), True))
                elif isinstance(exc, NoPermissionError) or "NOPERM" in str(exc):
                    raise lua.missing_library(node, exc) from exc
                else:
                    raise
        return done

    def _load(self, names: set[str]) -> None:
        if self.script_mode is ScriptMode.FUNCTIONS:
            self._install_functions()
            return
        for name in names:
            self.redis.script_load(lua.script(name).source)

    # ------------------------------------------------------------ sending

    def _one(self, call: Call) -> Any:
        try:
            return self._send(call)
        except ResponseError as exc:
            if not _script_missing(self.script_mode, call, exc):
                raise
            assert call.script is not None
            self._load({call.script})
            return self._send(call)

    def _send(self, call: Call) -> Any:
        if self._direct.allows((call,)):
            return _raise_error(self._over_one_connection([call], streamed=False)[0])
        if call.script is not None:
            return self.redis.execute_command(*_args(call, self.script_mode))
        route = _route(self.redis, call)
        return _unwrap(self.redis.execute_command(*call.command, **route), route)

    def _batch(self, calls: list[Call], streamed: bool = False) -> list[Any]:
        if not calls:
            return []
        results = self._pipeline(calls, streamed)
        missing = [i for i, r in enumerate(results) if _script_missing(self.script_mode, calls[i], r)]
        if missing:  # server restarted or flushed its scripts: load and redo only those
            self._load({str(calls[i].script) for i in missing})
            redo = self._pipeline([calls[i] for i in missing])
            for i, r in zip(missing, redo, strict=True):
                results[i] = r
        return _settle(calls, results)

    def _pipeline(self, calls: list[Call], streamed: bool = False) -> list[Any]:
        if self._direct.allows(calls):
            return self._over_one_connection(calls, streamed)
        pipe = self.redis.pipeline(transaction=False)
        for call in calls:
            # execute_command, not pipe.evalsha: redis-py blocks the evalsha method on cluster
            # pipelines, while EVALSHA/FCALL sent this way is routed by its first key
            # (engine.connection reads the keys from the command line)
            pipe.execute_command(*_args(call, self.script_mode))
        return list(pipe.execute(raise_on_error=False))

    def _over_one_connection(self, calls: list[Call], streamed: bool) -> list[Any]:
        """Like a redis-py pipeline (same retries: a broken connection re-sends every call),
        without its per-command layers."""
        assert self._held is not None
        mode = self.script_mode

        def use(conn: Any) -> list[Any]:
            return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: _exchange(conn, calls, streamed, mode), lambda _: conn.disconnect()
            )

        return self._held.run(use)

    def close(self) -> None:
        if self._held is not None:
            self._held.give_back()
        self.redis.close()


class AsyncBackend:
    """``SyncBackend`` for an asyncio client."""

    def __init__(self, client: aioredis.Redis, script_mode: ScriptMode | None = None) -> None:
        self.redis = client  # also accepts asyncio RedisCluster
        self._direct = _Direct(client)
        self._held = AsyncHeldConnection(self._direct.pool) if self._direct.pool is not None else None
        self.script_mode = script_mode if script_mode is not None else lua.script_mode()
        self._deadlines = Deadlines()
        """The time limits of the round trips in flight (``_exchange_async``)."""

    async def run(self, op: Op[T]) -> T:
        try:
            request = next(op)
            while True:
                request = op.send(await self.execute(request))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def execute(self, request: Request) -> Any:
        try:
            if isinstance(request, Batch):
                return await self._batch(request.calls, request.streamed)
            return await self._one(request)
        except _TRANSLATED as exc:
            translated = _translate(exc)
            if translated is exc:  # e.g. a client-side cluster error (keys in different slots)
                raise
            raise translated from exc

    # ------------------------------------------------------------ scripts and the library

    async def ensure_scripts(self) -> None:
        """``SyncBackend.ensure_scripts``: a worker's version check at start."""
        if self.script_mode is not ScriptMode.FUNCTIONS:
            return
        try:
            if not all(s.present for s in await self._library_status()):
                await self._install_functions()
        except _TRANSLATED as exc:
            raise _translate(exc) from exc

    async def _library_status(self) -> list[lua.LibraryStatus]:
        found = []
        for node in lua.primaries(self.redis):
            try:
                await self.redis.execute_command(*lua.version_call(), **lua.on(node))
                found.append(lua.LibraryStatus(lua.node_name(node), True))
            except ResponseError as exc:
                if not lua.is_function_missing(exc):
                    raise
                found.append(lua.LibraryStatus(lua.node_name(node), False))
        return found

    async def _install_functions(self) -> list[lua.LibraryStatus]:
        source = lua.library().source
        done = []
        for node in lua.primaries(self.redis):
            try:
                await self.redis.execute_command("FUNCTION", "LOAD", source, **lua.on(node))
                done.append(lua.LibraryStatus(lua.node_name(node), True, loaded=True))
            except ResponseError as exc:
                if lua.is_library_present(exc):
                    done.append(lua.LibraryStatus(lua.node_name(node), True))
                elif isinstance(exc, NoPermissionError) or "NOPERM" in str(exc):
                    raise lua.missing_library(node, exc) from exc
                else:
                    raise
        return done

    async def _load(self, names: set[str]) -> None:
        if self.script_mode is ScriptMode.FUNCTIONS:
            await self._install_functions()
            return
        for name in names:
            await self.redis.script_load(lua.script(name).source)

    # ------------------------------------------------------------ sending

    async def _one(self, call: Call) -> Any:
        try:
            return await self._send(call)
        except ResponseError as exc:
            if not _script_missing(self.script_mode, call, exc):
                raise
            assert call.script is not None
            await self._load({call.script})
            return await self._send(call)

    async def _send(self, call: Call) -> Any:
        if self._direct.allows((call,)):
            return _raise_error((await self._over_one_connection([call], streamed=False))[0])
        if call.script is not None:
            return await self.redis.execute_command(*_args(call, self.script_mode))
        route = _route(self.redis, call)
        return _unwrap(await self.redis.execute_command(*call.command, **route), route)

    async def _batch(self, calls: list[Call], streamed: bool = False) -> list[Any]:
        if not calls:
            return []
        results = await self._pipeline(calls, streamed)
        missing = [i for i, r in enumerate(results) if _script_missing(self.script_mode, calls[i], r)]
        if missing:
            await self._load({str(calls[i].script) for i in missing})
            redo = await self._pipeline([calls[i] for i in missing])
            for i, r in zip(missing, redo, strict=True):
                results[i] = r
        return _settle(calls, results)

    async def _pipeline(self, calls: list[Call], streamed: bool = False) -> list[Any]:
        if self._direct.allows(calls):
            return await self._over_one_connection(calls, streamed)
        pipe = self.redis.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*_args(call, self.script_mode))  # see SyncBackend._pipeline
        return list(await pipe.execute(raise_on_error=False))

    async def _over_one_connection(self, calls: list[Call], streamed: bool) -> list[Any]:
        assert self._held is not None
        mode = self.script_mode
        deadlines = self._deadlines

        async def use(conn: Any) -> list[Any]:
            return await conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: _exchange_async(conn, calls, streamed, mode, deadlines), lambda _: conn.disconnect()
            )

        return await self._held.run(use)

    async def close(self) -> None:
        if self._held is not None:
            await self._held.give_back()
        await self.redis.aclose()
