"""The console served to a browser (``rediq-tui --serve``) in headless Chromium (Debian's
``chromium``): the page draws the terminal (a canvas, the console's output received), the
console it received shows the live queues, and the screenshot is a picture of it, not a blank
page. ``scripts/serve_screenshot.py`` does the capture (and regenerates
``screenshots/served-console.png``)."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def screenshot_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "serve_screenshot", ROOT / "scripts" / "serve_screenshot.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of pixels (RGB bytes, alpha dropped) of an 8-bit, non-interlaced
    PNG, as Chromium writes them (enough to tell a picture from a blank page)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6), (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        row_filter, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = previous[x]
            c = previous[x - channels] if x >= channels else 0
            if row_filter == 1:
                line[x] = (line[x] + a) & 0xFF
            elif row_filter == 2:
                line[x] = (line[x] + b) & 0xFF
            elif row_filter == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif row_filter == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [b"".join(r[i : i + 3] for i in range(0, len(r), channels)) for r in rows]


def test_the_served_console_shows_live_queues_in_headless_chromium(tmp_path: Path) -> None:
    assert shutil.which("chromium") or shutil.which("chromium-browser"), (
        "Debian's chromium is needed for this test (.ci/run installs it: apt-get install chromium)"
    )
    script = screenshot_script()
    shot = script.capture(width=1000, height=600, settle_s=3.0)
    assert shot.first_byte and shot.canvases >= 1  # the page drew the terminal it received
    for queue in script.QUEUES:
        assert queue in shot.screen_text, f"{queue} never reached the page"
    assert "Queues" in shot.screen_text and "Pending" in shot.screen_text
    (tmp_path / "served.png").write_bytes(shot.png)
    width, height, rows = png_pixels(shot.png)
    assert (width, height) == (1000, 600)
    colours = Counter(px for row in rows[::4] for px in (row[i : i + 3] for i in range(0, len(row), 3 * 4)))
    # a blank or error page has one or two colours; the console has its background, text,
    # the status bar and highlighted rows
    assert len(colours) >= 8, f"only {len(colours)} colours: the page looks blank"
    background_share = colours.most_common(1)[0][1] / sum(colours.values())
    assert background_share < 0.97, "the picture is almost all one colour"
