"""Stored tracebacks start at the handler's frame, with paths relative to the app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine.tracebacks
from engine.tracebacks import format_handler_traceback

ENGINE_DIR = Path(engine.tracebacks.__file__).resolve().parent

# the shape of the worker: it catches what the handler raises, several frames up, through asyncio
FAKE_WORKER = """
import asyncio

async def call(handler):
    return handler()

def run(handler):
    try:
        asyncio.run(call(handler))
    except Exception as exc:
        return exc
"""
namespace: dict[str, Any] = {}
exec(compile(FAKE_WORKER, str(ENGINE_DIR / "_fake_worker.py"), "exec"), namespace)
run: Callable[[Callable[[], None]], BaseException] = namespace["run"]


def lookup(order: str) -> None:
    raise KeyError(f"no order {order}")


def handler() -> None:
    lookup("o-1")


def chained_handler() -> None:
    try:
        lookup("o-2")
    except KeyError as exc:
        raise RuntimeError("payment failed") from exc


def test_starts_at_the_handler_with_relative_paths() -> None:
    text = format_handler_traceback(run(handler), full=False)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith('  File "tests/pure/test_tracebacks.py", line ') and lines[1].endswith(
        ", in handler"
    )
    assert "in lookup" in text and lines[-1] == "KeyError: 'no order o-1'"
    assert "asyncio" not in text and "_fake_worker" not in text and str(Path.cwd()) not in text


def test_chained_exceptions_are_trimmed_too() -> None:
    text = format_handler_traceback(run(chained_handler), full=False)
    assert text.count("Traceback (most recent call last):") == 2
    assert "The above exception was the direct cause" in text
    assert "asyncio" not in text and "_fake_worker" not in text
    assert text.splitlines()[-1] == "RuntimeError: payment failed"


def test_full_keeps_the_worker_frames(monkeypatch: Any) -> None:
    text = format_handler_traceback(run(handler), full=True)
    assert "_fake_worker.py" in text and "asyncio" in text and str(Path.cwd()) in text
    monkeypatch.setenv("REDIQ_FULL_TRACEBACKS", "1")
    assert format_handler_traceback(run(handler)) == text


def test_an_error_of_rediq_itself_keeps_its_frames() -> None:
    inner = run(None)  # type: ignore[arg-type]  # the fake worker calls None: every frame is rediq's
    text = format_handler_traceback(inner, full=False)
    assert "_fake_worker.py" in text and text.splitlines()[-1].startswith("TypeError")


def test_each_frame_shows_its_source_line() -> None:
    """Lines are read when the trimmed frames are formatted (not looked up, with a stat of each
    file, for every frame of the whole stack first)."""
    text = format_handler_traceback(run(handler), full=False)
    assert '    lookup("o-1")' in text.splitlines()
    assert '    raise KeyError(f"no order {order}")' in text.splitlines()


def test_paths_follow_the_working_directory(monkeypatch: Any) -> None:
    """The roots paths are cut from are cached, keyed by the working directory and import path:
    a worker that changes directory cuts from the new one."""
    assert '  File "tests/pure/test_tracebacks.py"' in format_handler_traceback(run(handler), full=False)
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    assert '  File "pure/test_tracebacks.py"' in format_handler_traceback(run(handler), full=False)


def test_a_relative_file_name_is_resolved_from_the_working_directory_of_now(
    monkeypatch: Any, tmp_path: Path
) -> None:
    """Frames of a script run as ``python app.py`` carry the relative name ``app.py``; after a
    change of directory the cached resolution of the old one must not be used (it would cut
    ``a/app.py`` from the new working directory)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "app.py").write_text("def fail():\n    raise ValueError('x')\n")
    code: dict[str, Any] = {}
    exec(compile((tmp_path / "a" / "app.py").read_text(), "app.py", "exec"), code)
    for cwd in (tmp_path / "a", tmp_path):
        monkeypatch.chdir(cwd)
        assert '  File "app.py", line 2, in fail' in format_handler_traceback(run(code["fail"]), full=False)
