"""Tracebacks stored with a failed task start at the handler's own frame.

A handler's exception travels up through the worker (``engine/worker/``, ``asyncio``, the
thread pool) before it is caught; those frames are the same for every failure and say nothing
about the user's code, so they are cut, as pytest and Celery do. Paths are shortened relative
to the application's directory (the working directory, or the import root of the handler's
module). ``full=True`` (``REDIQ_FULL_TRACEBACKS=1``) keeps everything, for debugging rediq.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from pathlib import Path

FULL_ENV = "REDIQ_FULL_TRACEBACKS"
MAX_FRAMES = 20

_ENGINE_DIR = str(Path(__file__).resolve().parent) + os.sep
_STDLIB_DIRS = tuple(
    str(Path(p).resolve()) + os.sep
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    if p
)


def _internal(filename: str) -> bool:
    """A frame of rediq's worker or of the standard library's machinery around it."""
    resolved = str(Path(filename).resolve()) if filename and not filename.startswith("<") else filename
    if resolved.startswith(_ENGINE_DIR):
        return True
    return resolved.startswith(_STDLIB_DIRS) and "site-packages" not in resolved


def _short(filename: str, roots: tuple[str, ...]) -> str:
    if not filename or filename.startswith("<"):
        return filename
    resolved = str(Path(filename).resolve())
    for root in roots:
        if resolved.startswith(root):
            return resolved[len(root) :]
    return filename


def _roots() -> tuple[str, ...]:
    """Where paths are cut from, longest first: the working directory and the import roots."""
    candidates = {os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))}
    return tuple(sorted((str(Path(c).resolve()) + os.sep for c in candidates), key=len, reverse=True))


def _trim(te: traceback.TracebackException, roots: tuple[str, ...], full: bool) -> None:
    frames = list(te.stack)
    if not full:
        first_user = next((i for i, f in enumerate(frames) if not _internal(f.filename)), None)
        if first_user is not None:  # an error raised by rediq itself keeps its frames
            frames = frames[first_user:]
        frames = frames[-MAX_FRAMES:]
    te.stack = traceback.StackSummary.from_list(
        [
            traceback.FrameSummary(
                _short(f.filename, roots) if not full else f.filename,
                f.lineno,
                f.name,
                lookup_line=False,
                line=f.line,
            )
            for f in frames
        ]
    )
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _trim(chained, roots, full)


def format_handler_traceback(exc: BaseException, *, full: bool | None = None) -> str:
    """The traceback of ``exc`` as stored on a failed task: from the handler's frame down,
    paths relative to the app (everything with ``full``, default from ``REDIQ_FULL_TRACEBACKS``)."""
    if full is None:
        full = os.environ.get(FULL_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    te = traceback.TracebackException.from_exception(exc)
    _trim(te, _roots(), full)
    return "".join(te.format())


__all__ = ["FULL_ENV", "format_handler_traceback"]
