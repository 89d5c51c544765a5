"""``rediq-tui --serve``: the console in a browser through textual-serve. An HTTP client reads
the served page and drives the websocket until the live queues are on the served screen; off
loopback every request needs the token."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from engine.client import Client
from rediq_tui.serve import console_command, is_loopback
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")


@contextmanager
def served(redis_url: str, *extra: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rediq_tui", "--serve", "--port", str(port), "--interval", "500", *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield port, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def get(url: str, deadline_s: float = 30.0) -> tuple[int, str, dict[str, str]]:
    """GET with retries until the server listens."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                return (
                    response.status,
                    await response.text(),
                    {k: v.value for k, v in response.cookies.items()},
                )
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def served_screen(ws_url: str, want: list[str], timeout: float = 60.0) -> str:  # noqa: ASYNC109
    """Connect as the browser page does and collect the terminal output until ``want`` shows."""
    seen = ""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_json(["resize", {"width": 100, "height": 30}])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.BINARY:
                seen += message.data.decode("utf-8", "replace")
            elif message.type == aiohttp.WSMsgType.TEXT:
                seen += message.data
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
            if all(w in ANSI.sub("", seen) for w in want):
                return ANSI.sub("", seen)
    raise AssertionError(f"never saw {want} on the served screen; got {ANSI.sub('', seen)[-2000:]!r}")


async def test_served_page_and_websocket_show_the_live_console(redis_url: str) -> None:
    with Client(redis_url) as c:
        c.enqueue("order:ship", {}, queue="served-orders", id="s-1")
    with served(redis_url) as (port, _):
        status, html, _ = await get(f"http://127.0.0.1:{port}/")
        assert status == 200 and f"ws://127.0.0.1:{port}/ws" in html
        screen = await served_screen(
            f"ws://127.0.0.1:{port}/ws?width=100&height=30", ["Queues", "served-orders"]
        )
        assert "Redis" in screen or "redis" in screen


async def test_off_loopback_every_request_needs_the_token(redis_url: str) -> None:
    with served(redis_url, "--host", "0.0.0.0", "--token", "s3cret-token") as (port, proc):
        status, body, _ = await get(f"http://127.0.0.1:{port}/")
        assert status == 403 and "token" in body
        status, _, cookies = await get(f"http://127.0.0.1:{port}/?token=wrong")
        assert status == 403 and not cookies
        status, html, cookies = await get(f"http://127.0.0.1:{port}/?token=s3cret-token")
        assert status == 200 and cookies.get("rediq_token") == "s3cret-token" and "/ws" in html
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"ws://127.0.0.1:{port}/ws")
        await served_screen(f"ws://127.0.0.1:{port}/ws?token=s3cret-token", ["Queues"])


def test_serve_defaults_and_command_line() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    command = console_command(
        ["--serve", "--host", "0.0.0.0", "--port", "9", "--redis-url", "redis://:pw@h/0", "--read-only"]
    )
    assert "--serve" not in command and "pw" not in command and "--read-only" in command
    assert "0.0.0.0" not in command
