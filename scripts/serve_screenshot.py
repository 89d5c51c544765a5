"""Screenshot of the console served to a browser (``rediq-tui --serve``) in headless Chromium.

    python scripts/serve_screenshot.py [--out screenshots/served-console.png]

Starts a private valkey-server with a few live queues (and a worker draining one of them),
serves the console on a loopback port, opens it in Debian's ``chromium`` (headless, fresh
profile) through the DevTools protocol, waits until the served terminal shows the queues and
saves a PNG. Exits non-zero when Chromium is missing or the page never shows the queues.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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


async def shoot(page_url: str, debug_port: int, want: str, width: int, height: int) -> bytes:
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
            await tools.call("Page.navigate", url=page_url)
            # the served terminal is drawn on a canvas; xterm.js keeps an accessible text copy
            script = "document.body ? document.body.innerText : ''"
            deadline = time.monotonic() + 60
            seen = ""
            while time.monotonic() < deadline:
                result = await tools.call("Runtime.evaluate", expression=script, returnByValue=True)
                seen = str(result.get("result", {}).get("value", ""))
                if want in seen:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(8)  # several refreshes: live figures, not the first paint
            shot = await tools.call("Page.captureScreenshot", format="png")
            if want not in seen:
                print(f"warning: the page text never showed {want!r} (canvas only?); screenshot saved anyway")
            return base64.b64decode(shot["data"])
    raise SystemExit("no page to screenshot")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots" / "served-console.png")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=640)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (Debian: apt-get install chromium)")
        return 2
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
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page = f"http://127.0.0.1:{port}/?fontsize=15"
        args.out.write_bytes(asyncio.run(shoot(page, debug_port, "inventory", args.width, args.height)))
        print(f"saved {args.out}")
        return 0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(profile, ignore_errors=True)
        server.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
