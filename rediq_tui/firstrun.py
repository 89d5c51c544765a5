"""What the console remembers between launches: for now, that the first-launch tip was hidden.
A marker file in the per-user state directory, ``$REDIQ_STATE_DIR`` or
``platformdirs.user_state_dir("rediq")`` (no Textual here: the tests' conftest imports it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

STATE_DIR_ENV = "REDIQ_STATE_DIR"
DISMISSED_MARKER = "first-launch-tip-dismissed"


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(platformdirs.user_state_dir("rediq"))


def tip_dismissed() -> bool:
    return (state_dir() / DISMISSED_MARKER).exists()


def remember_dismissed() -> bool:
    """Record the dismissal; False if the state directory cannot be written (the tip is then
    hidden for this session only and comes back next launch; nothing else breaks)."""
    try:
        directory = state_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (directory / DISMISSED_MARKER).touch()
    except OSError:
        return False
    return True
