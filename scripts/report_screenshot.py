"""
Regenerate ``docs/report.png``, the README's picture of the HTML run report: run
``examples/report_demo.py`` through the real CLI with ``--report``, then take a screenshot of
the report with headless Chromium (Debian's ``chromium``).

    python scripts/report_screenshot.py [--out docs/report.png] [--keep-html run.html]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.report._browser, the one Chromium driver

from tests.report._browser import chromium_missing, pixel_stats, screenshot  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    parser.add_argument("--keep-html", type=Path, help="also keep the report there")
    parser.add_argument("--size", default="1400x1500", help="WIDTHxHEIGHT of the screenshot")
    args = parser.parse_args()
    missing = chromium_missing()
    if missing:
        print(f"report_screenshot: {missing}.", file=sys.stderr)
        return 2
    width, height = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "run.html"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "conveyor",
                "run",
                str(ROOT / "examples" / "report_demo.py") + ":report_demo",
                "--report",
                str(page),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if not page.exists():
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, args.out, size=(width, height))
        if args.keep_html:
            shutil.copyfile(page, args.keep_html)
    stats = pixel_stats(args.out)
    print(f"wrote {args.out} ({stats['width']}x{stats['height']}, {stats['colours']} colours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
