"""The README's handler and producer example does what it says, run as written against a real
server and a real worker (issue 16: it used to enqueue to `default`, where its workers never
looked)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.engine.conftest import running_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]


def readme_blocks() -> dict[str, str]:
    """The README's python blocks of the handler section, by the file named in their first line."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Writing a task handler") : text.index("## Guarantees")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    named: dict[str, str] = {}
    for block in blocks:
        first = block.splitlines()[0]
        # the first block without a file name is the by-name snippet; later ones illustrate
        named.setdefault(first.removeprefix("# ").strip() if first.startswith("# app/") else "snippet", block)
    return named


@pytest.fixture
def app_package(tmp_path: Path) -> Iterator[Path]:
    blocks = readme_blocks()
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(blocks["app/tasks.py"])
    (package / "producer.py").write_text(blocks["app/producer.py"])
    sys.path.insert(0, str(tmp_path))
    yield package
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "app" or m.startswith("app.")]:
        del sys.modules[name]


async def test_readme_example_runs_as_written(
    app_package: Path, redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    import app.tasks  # type: ignore[import-not-found]

    async with running_worker(app.tasks.registry, redis_url, ["payment", "shipping"]):
        await wait_until(lambda: raw.hexists("rediq:types", "order:payment"))
        out = io.StringIO()

        def produce() -> None:
            with contextlib.redirect_stdout(out):
                import app.producer  # type: ignore[import-not-found]  # noqa: F401  (written here: runs the README's producer block)

        await asyncio.to_thread(produce)
        assert out.getvalue().splitlines() == ["{'charged': 1999}", "shipped o-1"]
        # the block for a process without the app's code: by name, still to the declared queue
        await asyncio.to_thread(exec, readme_blocks()["snippet"], {})
        by_name = [
            key
            for key in raw.scan_iter(match="rediq:{payment}:t:*")
            if '"o-2"' in (raw.hget(key, "payload") or "")
        ]
        assert len(by_name) == 1 and raw.hget(by_name[0], "max_retry") == "5"
        assert "default" not in raw.smembers("rediq:queues")
