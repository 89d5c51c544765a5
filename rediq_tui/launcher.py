"""Workers launched from the console: a subprocess per worker, its log tail, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass, field

DEFAULT_MODULE = "engine.cli"
LOG_LINES = 200


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    app: str
    queues: tuple[str, ...]
    concurrency: int = 4

    def argv(self, module: str = DEFAULT_MODULE) -> list[str]:
        """The worker's command line. The Redis URL is not on it (it may hold a password, and
        every local user can read a process's argv): ``environment`` passes it."""
        args = [sys.executable, "-m", module, "worker", "--app", self.app, "--queues", ",".join(self.queues)]
        return args + ["--concurrency", str(self.concurrency)]


def environment(redis_url: str | None, prefix: str) -> dict[str, str]:
    """What a launched worker gets besides the console's own environment: the URL and prefix
    it must use (a URL always: an inherited REDIS_URL must not send it elsewhere)."""
    env = {"REDIQ_PREFIX": prefix}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@dataclass
class LaunchedWorker:
    spec: LaunchSpec
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    returncode: int | None = None
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.returncode is None

    @property
    def label(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"pid {self.pid} · {','.join(self.spec.queues)} ×{self.spec.concurrency} · {state}"

    async def start(self, env: dict[str, str] | None = None) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl+C in the console does not reach the worker
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.decode("utf-8", errors="replace").rstrip("\n"))
        self.returncode = await self.proc.wait()
        self.lines.append(f"[exited with code {self.returncode}]")

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM (the worker drains), then SIGKILL after ``grace_s``."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        self.returncode = self.proc.returncode
        return self.returncode
