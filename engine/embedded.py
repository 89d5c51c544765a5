"""Where the engine finds Redis when no URL is given (placeholder until the embedded server)."""

from __future__ import annotations

import os


def default_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
