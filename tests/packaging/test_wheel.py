"""The wheel installs the project's own packages and nothing else: no top-level ``examples``,
``tests`` or ``scripts`` package to collide with a user's, and the demo the console imports is
inside ``rediq_tui``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNPACKAGED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "site"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # a copy, so the build's build/ and egg-info never touch the checkout under test
    source = tmp_path_factory.mktemp("src") / "rediq"
    shutil.copytree(ROOT, source, ignore=UNPACKAGED)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("rediq-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_installs_only_the_projects_packages(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"engine", "rediq_tui"}


def test_wheel_carries_what_the_packages_load_at_run_time(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "rediq_tui/demo/demo.py" in names and "rediq_tui/demo/run_worker.py" in names
    assert "engine/scripts/_lib.lua" in names and "rediq_tui/app.tcss" in names
    assert "engine/py.typed" in names and "rediq_tui/py.typed" in names


def test_python_classifiers_match_requires_python(wheel: zipfile.ZipFile) -> None:
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = wheel.read(metadata_name).decode()
    requires = next(line for line in metadata.splitlines() if line.startswith("Requires-Python:"))
    minors = sorted(
        int(line.rsplit(".", 1)[1])
        for line in metadata.splitlines()
        if line.startswith("Classifier: Programming Language :: Python :: 3.")
    )
    assert requires == f"Requires-Python: >=3.{minors[0]}"
    assert minors == list(range(minors[0], minors[-1] + 1))  # no gap in what we claim
    assert sys.version_info[:2] >= (3, minors[0])
