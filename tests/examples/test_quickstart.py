"""The README's quickstart block runs as written (bash, from the repository root, on a private
embedded Valkey) and greets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from engine import embedded

ROOT = Path(__file__).resolve().parents[2]


def quickstart_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your first task in five minutes", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert match, "the quickstart section has no bash block"
    return match.group(1)


def test_the_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    block = quickstart_block()
    assert "examples.quickstart.producer Ada" in block
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    data = tmp_path / "data"
    env.update(
        REDIQ_DATA_DIR=str(data),
        REDIQ_CONFIG=str(tmp_path / "none.toml"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
    )
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        embedded.stop_server(directory=data)  # the block's embedded Valkey
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Hello, Ada!" in result.stdout
    assert "greetings" in result.stdout and "1 passed" in result.stdout
