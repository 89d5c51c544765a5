"""What the committed pictures and documents may contain (issue 22): no path from the machine
that made them, glyphs that common monospace fonts draw, and every picture the README links
present at 80x24 and at a wider size, showing what its link names, taken from a demo that had
run long enough for its per-minute figures to be real."""

from __future__ import annotations

import html
import re
from pathlib import Path

import platformdirs
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [
    ROOT / "screenshots",
    ROOT / "docs",
    ROOT / "README.md",
    ROOT / "rediq_tui" / "README.md",
    ROOT / "examples" / "README.md",
]
GENERIC_MACHINE_PATHS = (
    "/root/",
    "/home/",
    "/tmp/",
    "/work/",
    "/Users/",
    "/var/folders/",
    ".local/share/rediq",
)

MONOSPACE_SAFE = set("·íóéáñüöäåøłśżźćń…•─│┌┐└┘├┤┬┴┼━┃═║▀▁▂▃▄▅▆▇█▉▊▋▌▍▎▏▐░▒▓▔▕●○■□▲▼►◄▶◀✓✔✗✘✖←↑→↓")
"""Non-ASCII characters a picture may show: each is drawn by DejaVu Sans Mono (checked with
``fc-list ':charset=HEX'``; Menlo derives from it) and none is an emoji-width symbol. U+23F8,
the pause sign, is not: it was a box in the README's first picture."""

WIDE = (140, 40)
README_PICTURES = {
    # the picture: texts it must show, for the feature its README link names
    "queues": ("Queues ·", "Ok/m", "Err/m"),
    "workers": ("Workers ·", "live"),
    "tasks-progress": ("imports · active", "%", "Imported"),
    "task-detail": ("· dead ·", "Traceback", "in shipping"),
    "task-detail-why": ("Why not running?",),
    "failures": ("Failures ·", "groups"),
    "cron": ("Cron ·", "stock-reconcile"),
    "audit": ("Audit",),
}


def machine_paths() -> list[str]:
    """What would say which machine (and whose) made a file."""
    specific = [str(ROOT), platformdirs.user_data_dir("rediq"), str(Path.home())]
    return [*GENERIC_MACHINE_PATHS, *(p.rstrip("/") + "/" for p in specific if len(p) > 1)]


def svg_lines(svg: str) -> list[str]:
    """The text of a Textual screenshot, one string per terminal row (a row is several
    ``<text>`` elements; a path can be cut between two)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in re.findall(r'<text[^>]*? x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    return ["".join(t for _, t in sorted(parts)) for _, parts in sorted(rows.items())]


def readable_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".svg":
        svg = raw.decode()
        return svg + "\n" + html.unescape(svg) + "\n" + "\n".join(svg_lines(svg))
    return raw.decode("latin-1")  # a PNG's text chunks and any other file, byte for byte


def files(roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        found += sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return found


def paths_in(path: Path) -> list[str]:
    text = readable_text(path)
    return [p for p in machine_paths() if p in text]


def test_no_committed_picture_or_document_names_a_machine_path() -> None:
    scanned = files(SCANNED)
    assert len(scanned) > 30  # the pictures and the docs were found
    offenders = {str(p.relative_to(ROOT)): found for p in scanned if (found := paths_in(p))}
    assert offenders == {}


def test_the_path_check_finds_a_path_cut_between_two_text_elements(tmp_path: Path) -> None:
    svg = tmp_path / "shot.svg"
    svg.write_text(
        '<svg><text class="r1" x="0" y="20">File&#160;"/wo</text>'
        '<text class="r2" x="36.6" y="20">rk/wt-x/engine/worker.py"</text></svg>'
    )
    assert paths_in(svg) == ["/work/"]
    assert svg_lines(svg.read_text()) == ['File "/work/wt-x/engine/worker.py"']


@pytest.mark.parametrize("svg", sorted((ROOT / "screenshots").rglob("*.svg")), ids=lambda p: p.name)
def test_pictures_show_only_glyphs_common_monospace_fonts_draw(svg: Path) -> None:
    shown = set("".join(svg_lines(svg.read_text())))
    assert {c for c in shown if ord(c) > 126} - MONOSPACE_SAFE == set()


def columns_and_rows(svg: Path) -> tuple[int, int]:
    """The terminal size a Textual screenshot was taken at, from its view box (a cell is 12.2
    by 24.4 units, inside a fixed 18 by 50 frame)."""
    found = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg.read_text())
    assert found, f"{svg.name} is not a Textual screenshot"
    width, height = (float(v) for v in found.groups())
    return round((width - 18) / 12.2), round((height - 50) / 24.4)


@pytest.mark.parametrize(("name", "must_show"), README_PICTURES.items())
def test_each_readme_picture_exists_at_80x24_and_wide_showing_its_feature(
    name: str, must_show: tuple[str, ...]
) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"screenshots/{name}.svg" in readme and f"screenshots/{name}-wide.svg" in readme
    for suffix, (columns, rows) in (("", (80, 24)), ("-wide", WIDE)):
        svg = ROOT / "screenshots" / f"{name}{suffix}.svg"
        assert columns_and_rows(svg) == (columns, rows), svg.name
        text = "\n".join(svg_lines(svg.read_text()))
        for expected in must_show:
            assert expected in text, f"{svg.name} does not show {expected!r}"


def test_the_queues_picture_has_real_per_minute_figures() -> None:
    """Every queue's Ok/m is a figure, and the busy ones' are over a full minute's worth (the
    demo ran for more than a minute): not the idle demo's row of zeros."""
    lines = svg_lines((ROOT / "screenshots" / "queues-wide.svg").read_text())
    header = next(i for i, line in enumerate(lines) if "Ok/m" in line)
    names = ("payment", "inventory", "shipping", "notifications")
    rows = [cells for line in lines[header + 1 :] if (cells := line.split())[:1] and cells[0] in names]
    rows = [cells for cells in rows if cells[1].isdigit()]  # the table, not the detail line under it
    assert len(rows) == len(names)
    ok_column = lines[header].split().index("Ok/m")
    assert all(float(row[ok_column]) >= 20 for row in rows), rows
