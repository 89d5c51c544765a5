"""Console settings from the command line."""

from __future__ import annotations

from dataclasses import dataclass

from engine.connection import mask_url
from rediq_tui.launcher import DEFAULT_MODULE


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    redis_url: str | None = None
    interval_ms: int = 2000
    mouse: bool = True
    read_only: bool = False
    theme: str = "dark"
    events: bool = True
    """Listen to pub/sub events between polls."""
    worker_module: str = DEFAULT_MODULE
    """Module run with ``python -m`` to launch workers (same flags as ``rediq-worker``)."""
    worker_app: str = ""
    """Default app path in the launch dialog."""
    stop_grace_s: float = 10.0
    label: str | None = None
    """Shown in the status bar instead of the (credential-free) URL."""

    prefix: str | None = None
    """Key prefix (default: from the rediq configuration, else ``rediq``)."""
    demo: bool = False
    """Run the example order pipeline (workers + a stream of orders) while the console is open."""
    serve: bool = False
    """Serve the console to browsers (textual-serve) instead of running it here."""
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_token: str | None = None

    @property
    def display_name(self) -> str:
        if self.label:
            return self.label
        if not self.redis_url:
            return "default Redis"
        return mask_url(self.redis_url)  # never show a password

    @property
    def interval_s(self) -> float:
        return max(0.1, self.interval_ms / 1000)
