"""Screenshot of the console served to a browser (``rediq-tui --serve``) in headless Chromium.

    python scripts/serve_screenshot.py [--out screenshots/served-console.png]

Starts a private valkey-server with a few live queues (and a worker draining one of them),
serves the console on a loopback port, opens it in Debian's ``chromium`` (headless, fresh
profile) through the DevTools protocol, waits until the served terminal shows the queues and
saves a PNG. Exits non-zero when Chromium is missing or the page never shows the queues.

The served terminal is drawn on a canvas (xterm.js), so the page has no text to read: a script
Chromium runs before the page's own taps the page's WebSocket and keeps what the console sent
(``capture`` returns it without its escape sequences): the queue names the browser drew.
``tests/e2e/test_served_chromium.py`` runs ``capture`` and checks the picture and that text.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.client import Client  # noqa: E402
from rediq_tui.firstrun import DISMISSED_MARKER, STATE_DIR_ENV  # noqa: E402
from tests.servers import ServerProcess, free_port  # noqa: E402
from tests.tui.data import make_dead  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


QUEUES = ("inventory", "notifications", "payment", "shipping")
"""The queues ``fill`` plants: the served page must show them."""
ANSI = re.compile(
    r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>78]"
)

# Runs before the page's scripts: every WebSocket the page opens keeps what it received (the
# console's output, UTF-8 bytes of escape sequences and text) in window.__rediqScreen.
WEBSOCKET_TAP = """
(() => {
  const Native = window.WebSocket;
  window.__rediqScreen = "";
  function Tapped(url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    const decoder = new TextDecoder();
    ws.addEventListener("message", (event) => {
      const text = typeof event.data === "string" ? event.data : decoder.decode(event.data, {stream: true});
      window.__rediqScreen = (window.__rediqScreen + text).slice(-400000);
    });
    return ws;
  }
  Tapped.prototype = Native.prototype;
  for (const name of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Tapped[name] = Native[name];
  window.WebSocket = Tapped;
})();
"""
# What the page looks like once the console drew: a canvas in the terminal, bytes received
PAGE_STATE = """JSON.stringify({
  canvases: document.querySelectorAll("#terminal canvas").length,
  firstByte: document.body.classList.contains("-first-byte"),
  screen: window.__rediqScreen || ""
})"""


@dataclass(frozen=True)
class Capture:
    png: bytes
    screen_text: str
    """What the console sent the page, escape sequences removed."""
    canvases: int
    """Canvas elements xterm.js drew the terminal on."""
    first_byte: bool
    """The page marked that the console's output arrived."""


def fill(url: str) -> None:
    with Client(url) as c:
        make_dead(c, "payment", 3)
        for q, n in (("inventory", 12), ("payment", 7), ("shipping", 4), ("notifications", 9)):
            for i in range(n):
                c.enqueue(f"{q}:job", {"order_id": i, "city": "Berlin"}, queue=q, id=f"{q[:3]}-{i:03d}")
        for i in range(400):  # drained live by the worker started below
            c.enqueue("tui:quick", {}, queue="tuiq", id=f"live-{i:03d}")


class DevTools:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))


async def shoot(
    page_url: str, debug_port: int, want: str, width: int, height: int, settle_s: float
) -> Capture:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{debug_port}/json/list") as r:
                    targets = [t for t in await r.json() if t.get("type") == "page"]
                if targets:
                    break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.3)
        if not targets:
            raise SystemExit("chromium's DevTools endpoint never answered")
        async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            await tools.call("Page.enable")
            await tools.call("Page.addScriptToEvaluateOnNewDocument", source=WEBSOCKET_TAP)
            await tools.call("Page.navigate", url=page_url)
            deadline = time.monotonic() + 90
            state: dict[str, Any] = {}
            while time.monotonic() < deadline:
                result = await tools.call("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)
                state = json.loads(str(result.get("result", {}).get("value", "{}")))
                if want in ANSI.sub("", state.get("screen", "")):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(settle_s)  # several refreshes: live figures, not the first paint
            result = await tools.call("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)
            state = json.loads(str(result.get("result", {}).get("value", "{}")))
            shot = await tools.call("Page.captureScreenshot", format="png")
            return Capture(
                base64.b64decode(shot["data"]),
                ANSI.sub("", state.get("screen", "")),
                int(state.get("canvases", 0)),
                bool(state.get("firstByte", False)),
            )
    raise SystemExit("no page to screenshot")


def capture(width: int = 1100, height: int = 640, settle_s: float = 8.0) -> Capture:
    """Serve the console on a seeded private server and capture it in headless Chromium.
    Raises ``FileNotFoundError`` when Chromium is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    server = ServerProcess(port=free_port()).start()
    procs: list[subprocess.Popen[bytes]] = []
    profile = tempfile.mkdtemp(prefix="rediq-chromium-")
    try:
        fill(server.url)
        port, debug_port = free_port(), free_port()
        state = Path(profile) / "console-state"  # the first-launch tip dismissed, the user's untouched
        state.mkdir()
        (state / DISMISSED_MARKER).touch()
        env = {**os.environ, "REDIS_URL": server.url, "PYTHONPATH": str(ROOT), STATE_DIR_ENV: str(state)}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rediq_tui", "--serve", "--port", str(port), "--interval", "1000"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        worker = [sys.executable, "-m", "engine.cli", "worker", "--app", "tests.tui.apps:console"]
        procs.append(
            subprocess.Popen(
                [*worker, "--queues", "tuiq", "--concurrency", "1"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--remote-debugging-port={debug_port}",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        page = f"http://127.0.0.1:{port}/?fontsize=15"
        return asyncio.run(shoot(page, debug_port, QUEUES[0], width, height, settle_s))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(profile, ignore_errors=True)
        server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots" / "served-console.png")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=640)
    args = parser.parse_args()
    try:
        shot = capture(args.width, args.height)
    except FileNotFoundError as exc:
        print(exc)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(shot.png)
    print(f"saved {args.out}")
    missing = [q for q in QUEUES if q not in shot.screen_text]
    if missing:
        print(f"the served console never showed queue(s) {', '.join(missing)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
