"""
Headless Chromium for the report's tests, the bench and the screenshot script: open a report
from disk, read what its script drew (the data attributes of ``#report-check``), take a
screenshot, and tell a blank PNG from a drawn one with the standard library alone.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

#: Debian's chromium, as ``.ci/run`` installs it.
CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: A bound against a hung browser, not a timing.
BOUND = 120.0


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None if Chromium is installed."""
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed ({CHROMIUM}); .ci/run installs Debian's chromium"
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    # A profile of its own per call, removed after: no state shared between tests.
    with tempfile.TemporaryDirectory(prefix="conveyor-chromium-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=BOUND,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def dump_dom(page: Path, fragment: str = "") -> str:
    """
    The DOM of ``page`` (opened at ``#fragment`` if given) once its scripts ran (the report
    draws everything on load).
    """
    uri = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    done = _run(["--virtual-time-budget=10000", "--dump-dom", uri])
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


def check_attributes(dom: str) -> dict[str, str]:
    """The data attributes the report's script wrote on ``#report-check``."""
    match = re.search(r'<div id="report-check"([^>]*)>', dom)
    assert match, "the page has no #report-check element"
    return {
        k.replace("-", "_"): html.unescape(v)
        for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', match.group(1))
    }


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1400, 1700)) -> Path:
    """A PNG of ``page`` at ``size`` pixels."""
    done = _run(
        [
            f"--window-size={size[0]},{size[1]}",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
    )
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    return png


def png_pixels(png: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the raw rows (RGB or RGBA, unfiltered) of an 8-bit PNG."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None
    width, height, depth, colour = header[0], header[1], header[2], header[3]
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, prev, bpp)
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = prev[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = prev[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + pred) & 0xFF


def pixel_stats(png: Path) -> dict[str, Any]:
    """The variance of the grey levels of ``png`` and how many distinct colours it has."""
    width, height, rows = png_pixels(png)
    bpp = len(rows[0]) // width
    greys: list[int] = []
    colours: set[bytes] = set()
    for row in rows[::4]:  # every fourth row is plenty to tell a drawn page from a blank one
        for x in range(0, width * bpp, bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            greys.append((r * 299 + g * 587 + b * 114) // 1000)
            colours.add(row[x : x + 3])
    mean = sum(greys) / len(greys)
    variance = sum((v - mean) ** 2 for v in greys) / len(greys)
    return {"width": width, "height": height, "variance": variance, "colours": len(colours)}
