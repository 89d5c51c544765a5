"""A worker launched from the console gets the Redis URL through its environment, never on
its command line, which every local user can read in ``ps``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from rediq_tui.launcher import LaunchedWorker, LaunchSpec, environment

SECRET_URL = "redis://:hunter2-s3cret@127.0.0.1:1/0"


def proc_file(pid: int, name: str) -> bytes:
    path = Path(f"/proc/{pid}/{name}")
    return path.read_bytes() if path.exists() else b""


async def test_launched_worker_has_no_password_on_its_command_line() -> None:
    spec = LaunchSpec(app="tests.tui.apps:console", queues=("q",), concurrency=1)
    worker = LaunchedWorker(spec, spec.argv())
    await worker.start(env=environment(SECRET_URL, "rediq"))
    try:
        deadline = time.monotonic() + 10
        seen = b""
        # between fork and exec the child still shows this process's argv: wait for the worker's own
        while b"engine.cli" not in seen and time.monotonic() < deadline:
            seen = proc_file(worker.pid, "cmdline")
            await asyncio.sleep(0.01)
        assert b"engine.cli" in seen and seen.split(b"\0")[0] == sys.executable.encode()
        assert b"hunter2" not in seen and b"redis://" not in seen
        environ = proc_file(worker.pid, "environ").split(b"\0")
        assert f"REDIS_URL={SECRET_URL}".encode() in environ
    finally:
        await worker.stop(grace_s=5)
