"""Tracebacks stored with a failed task start at the handler's own frame.

A handler's exception travels up through the worker (``engine/worker/``, ``asyncio``, the
thread pool) before it is caught; those frames are the same for every failure and say nothing
about the user's code, so they are cut, as pytest and Celery do. Paths are shortened relative
to the application's directory (the working directory, or the import root of the handler's
module). ``full=True`` (``REDIQ_FULL_TRACEBACKS=1``) keeps everything, for debugging rediq.
"""

from __future__ import annotations

import functools
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


def _resolved(filename: str) -> str:
    """``filename`` resolved; a relative one (``python app.py`` names its frames so) from the
    working directory of now, as ``Path.resolve`` would, so the cache never answers for an
    earlier one."""
    return _resolved_absolute(filename if os.path.isabs(filename) else os.path.join(os.getcwd(), filename))


# Resolving a path walks it with a stat per component: once per file, not once per frame of
# every failure (a failing task's traceback cost ~250 µs of worker CPU, most of it here).
@functools.lru_cache(maxsize=4096)
def _resolved_absolute(filename: str) -> str:
    return str(Path(filename).resolve())


def _internal(filename: str) -> bool:
    """A frame of rediq's worker or of the standard library's machinery around it."""
    resolved = _resolved(filename) if filename and not filename.startswith("<") else filename
    if resolved.startswith(_ENGINE_DIR):
        return True
    return resolved.startswith(_STDLIB_DIRS) and "site-packages" not in resolved


def _short(filename: str, roots: tuple[str, ...]) -> str:
    if not filename or filename.startswith("<"):
        return filename
    resolved = _resolved(filename)
    for root in roots:
        if resolved.startswith(root):
            return resolved[len(root) :]
    return filename


def _roots() -> tuple[str, ...]:
    """Where paths are cut from, longest first: the working directory and the import roots."""
    return _roots_of(os.getcwd(), tuple(sys.path))


@functools.lru_cache(maxsize=8)
def _roots_of(cwd: str, import_path: tuple[str, ...]) -> tuple[str, ...]:
    candidates = {cwd, *(p for p in import_path if p and os.path.isdir(p))}
    return tuple(sorted((_resolved(c) + os.sep for c in candidates), key=len, reverse=True))


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
    # lookup_lines=False: no stat of every frame's file per failure (linecache.checkcache); a
    # line is read when the trimmed frame is formatted, from linecache
    te = traceback.TracebackException.from_exception(exc, lookup_lines=False)
    _trim(te, _roots(), full)
    return "".join(te.format())


__all__ = ["FULL_ENV", "format_handler_traceback"]
