"""A counting TCP proxy in front of Valkey: how many commands a client library sends, and in
how many round trips, independent of the machine's speed.

A *command* is one top-level RESP request (an EVALSHA counts once, whatever its script does;
``INFO commandstats`` on the server counts the script's inner calls too). A *round trip* is a
burst of requests on one connection that follows a reply (or the connection's start): a
pipeline of 50 commands is one round trip. Only used for the commands-per-task workload; the
rate workloads talk to Valkey directly.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass


@dataclass
class Counts:
    commands: int = 0
    round_trips: int = 0
    connections: int = 0


class _RequestCounter:
    """Incremental count of complete RESP requests (arrays of bulk strings, or inline)."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data: bytes) -> int:
        self.buf += data
        buf, n = self.buf, 0
        pos = 0
        while True:
            start = pos
            if pos >= len(buf):
                break
            if buf[pos] == 42:  # '*'
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                items = int(buf[pos + 1 : eol])
                pos = eol + 2
                ok = True
                for _ in range(max(0, items)):
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        ok = False
                        break
                    size = int(buf[pos + 1 : eol])
                    pos = eol + 2 + size + 2
                    if pos > len(buf):
                        ok = False
                        break
                if not ok:
                    pos = start
                    break
            else:  # inline command
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                pos = eol + 2
            n += 1
        del buf[:pos]
        return n


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts = Counts()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-proxy", daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(self.counts.commands, self.counts.round_trips, self.counts.connections)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        with self._lock:
            self.counts.connections += 1
        state = {"replied": True}
        counter = _RequestCounter()

        async def upward() -> None:
            while data := await reader.read(65536):
                n = counter.feed(data)
                with self._lock:
                    self.counts.commands += n
                    if state["replied"] and n:
                        self.counts.round_trips += 1
                        state["replied"] = False
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downward() -> None:
            while data := await up_reader.read(65536):
                state["replied"] = True
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(upward(), downward(), return_exceptions=True)
