"""A small asyncio TCP fault proxy between a client and Redis (tc netem and toxiproxy are not
available here). Modes, switchable at any time from any thread:

- ``pass``: forward both ways;
- ``delay``: hold every chunk for ``delay_s`` before forwarding it (both directions);
- ``drop``: close every connection with a FIN, and keep closing new ones;
- ``reset``: abort every connection with an RST (SO_LINGER 0), and keep doing so;
- ``blackhole``: accept and read, forward nothing either way (a partitioned network);
- ``lose_replies``: forward requests to Redis but swallow its replies (the request runs, the
  client never hears back: the worst case for exactly-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "delay", "drop", "reset", "blackhole", "lose_replies"]
MODES: tuple[Mode, ...] = ("pass", "delay", "drop", "reset", "blackhole", "lose_replies")


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        self.mode, self.delay_s = mode, delay_s
        if mode in ("drop", "reset"):
            asyncio.run_coroutine_threadsafe(self._close_all(abort=mode == "reset"), self._loop).result(5)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            await self._close_all(abort=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # ------------------------------------------------------------------ the proxy (its loop)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self, abort: bool) -> None:
        for w in list(self._writers):
            _close(w, abort)
        self._writers.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode in ("drop", "reset"):
            _close(client_w, abort=self.mode == "reset")
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            _close(client_w, abort=True)
            return
        self._writers |= {client_w, up_w}
        await asyncio.gather(
            self._pump(client_r, up_w, upstream=True),
            self._pump(up_r, client_w, upstream=False),
            return_exceptions=True,
        )
        for w in (client_w, up_w):
            self._writers.discard(w)
            _close(w, abort=False)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                mode = self.mode
                if mode == "delay":
                    await asyncio.sleep(self.delay_s)
                elif mode == "blackhole" or (mode == "lose_replies" and not upstream):
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _close(writer, abort=False)


def _close(writer: asyncio.StreamWriter, abort: bool) -> None:
    with contextlib.suppress(Exception):
        if abort:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
