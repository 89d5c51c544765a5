"""The documentation site builds with ``mkdocs build --strict`` (a broken link, a missing page or
a snippet that no longer exists fails it), and its generated references cover the code: every
CLI command, every console binding."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from engine.cli import cli

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def page_text(site: Path, page: str) -> str:
    body = (site / page / "index.html").read_text()
    body = body[body.find("<article") : body.find("</article>")]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def command_paths(group: click.Group, prefix: str = "rediq") -> Iterator[str]:
    for name, command in group.commands.items():
        if command.hidden:
            continue
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from command_paths(command, f"{prefix} {name}")


def test_cli_reference_has_every_command(site: Path) -> None:
    text = page_text(site, "reference/cli")
    missing = [path for path in command_paths(cli) if f"Usage: {path} " not in text]
    assert not missing


def test_console_keys_have_every_binding(site: Path) -> None:
    from textual.binding import Binding

    from rediq_tui.app import RediqApp

    text = page_text(site, "reference/console")
    for binding in RediqApp.BINDINGS:
        assert isinstance(binding, Binding)
        assert binding.description in text


def test_api_reference_and_pages_render(site: Path) -> None:
    api = page_text(site, "reference/api")
    for name in ("Client", "AsyncClient", "Registry", "TaskContext", "Retryable", "Backoff"):
        assert re.search(rf"\b{name} (dataclass )?¶", api), name  # its heading
    assert "pip install -e '.[test]'" in page_text(site, "getting-started")  # the README's snippet
    assert "RediqBacklogHigh" in page_text(site, "howto/monitoring")  # the rules file, included
    assert (site / "grafana" / "rediq.json").is_file()
