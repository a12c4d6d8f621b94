"""
Reports opened in real headless Chromium: what a person would see. One small flow per runner
(``concurrent``, Dask, Ray) through the real CLI; the plugin runners skip where not installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from conveyor.report import write_report
from tests.console._support import run_cli
from tests.report._browser import (
    check_attributes,
    chromium_missing,
    dump_dom,
    pixel_stats,
    screenshot,
)
from tests.report._support import MIXED_COUNTS, MIXED_FLOW, report_document, synthetic_record

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

RUNNERS = [
    pytest.param("concurrent", id="concurrent"),
    *(
        pytest.param(
            name,
            id=name,
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    importlib.util.find_spec(f"conveyor_{name}") is None,
                    reason=f"conveyor-{name} is not installed",
                ),
            ],
        )
        for name in ("dask", "ray")
    ),
]


def _cell(dom: str, task: str, state: str) -> int:
    match = re.search(rf'data-task="{task}" data-state="{state}">(\d+)<', dom)
    assert match, f"no count cell for {task}/{state}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Filled per runner by the first test that needs it: the CLI writes each report once."""
    return {}


def _report_of(runner: str, reports: dict[str, Path], folder: Path) -> Path:
    if runner not in reports:
        (folder / "mixed.py").write_text(MIXED_FLOW)
        proc = run_cli(
            "run",
            "mixed.py:mixed",
            "--runner",
            runner,
            "--report",
            "run.html",
            "--no-progress",
            cwd=folder,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        reports[runner] = folder / "run.html"
    return reports[runner]


@pytest.mark.parametrize("runner", RUNNERS)
def test_lanes_and_bars_for_every_run(
    runner: str, reports: dict[str, Path], tmp_path: Path
) -> None:
    """Every attempt that started is a bar, every run that started has one, on a known lane."""
    page = _report_of(runner, reports, tmp_path)
    data = report_document(page)
    seen = check_attributes(dump_dom(page))
    assert seen["done"] == "1" and "errors" not in seen, seen
    started = [t for t in data["attempts"]["start"] if t is not None]
    assert int(seen["bars"]) == len(started) == 5 + 2 + 1  # fetch ok, fetch-3 twice, total
    assert int(seen["runs_with_bars"]) == int(seen["started_runs"]) == 7
    assert int(seen["runs"]) == 8  # after-1 never started: no bar
    lanes = json.loads(seen["lane_names"])
    assert int(seen["lanes"]) == len(lanes) >= 1
    wheres = {data["strings"][w] if w >= 0 else "unknown" for w in data["attempts"]["where"]}
    assert set(lanes) == wheres
    if runner == "concurrent":
        assert all(lane.startswith("thread ") for lane in lanes)
    assert int(seen["graph_nodes"]) == 8 and int(seen["graph_edges"]) == 5 + 1
    assert int(seen["peak"]) >= 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_summary_numbers_and_the_failure_show(
    runner: str, reports: dict[str, Path], tmp_path: Path
) -> None:
    """The count table says what the flow ended with; the failed run shows its message."""
    page = _report_of(runner, reports, tmp_path)
    dom = dump_dom(page)
    for task_name, states in MIXED_COUNTS.items():
        for state, n in states.items():
            assert _cell(dom, task_name, state) == n
    assert _cell(dom, "fetch", "Completed") == 5 and _cell(dom, "after", "Completed") == 0
    assert re.search(r'<td id="flow-state-cell">Failed</td>', dom)
    assert re.search(r'<td id="total-runs">8</td>', dom)
    failure = re.search(r'<div class="failure" data-run="fetch-3".*?</div></div>', dom, re.S)
    assert failure and "ValueError: item 2 is broken" in failure.group(0)
    assert re.search(rf"<td>{runner}</td>", dom)


def test_a_selected_bar_tells_everything_about_its_attempt(
    reports: dict[str, Path], tmp_path: Path
) -> None:
    """What hover and click show: name, state, attempt number, duration, place, message."""
    page = _report_of("concurrent", reports, tmp_path)
    dom = dump_dom(page, "run=fetch-3")
    shown = re.search(r'<div id="selected">(.*?)</div>', dom, re.S)
    assert shown, "nothing selected"
    text = shown.group(1)
    assert text.startswith("fetch-3  (fetch)") and "state: Failed" in text
    assert "attempt 2 of 2" in text and "duration: " in text and "where: thread " in text
    assert "message: ValueError: item 2 is broken" in text


def test_a_screenshot_is_not_blank(reports: dict[str, Path], tmp_path: Path) -> None:
    """The page as drawn: many colours and real variance, not one flat colour."""
    page = _report_of("concurrent", reports, tmp_path)
    png = screenshot(page, tmp_path / "shot.png", size=(900, 700))
    stats = pixel_stats(png)
    assert stats["width"] == 900 and stats["height"] == 700
    assert stats["variance"] > 100 and stats["colours"] > 20, stats


def test_a_blank_page_is_told_apart(tmp_path: Path) -> None:
    """The blank check can fail: an empty page has no variance."""
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body style='background:#fff'></body></html>")
    stats = pixel_stats(screenshot(empty, tmp_path / "empty.png", size=(300, 200)))
    assert stats["variance"] < 1 and stats["colours"] <= 2, stats


def test_an_interrupted_report_says_so(tmp_path: Path) -> None:
    record = synthetic_record(30)
    page = write_report(record, tmp_path / "run.html", interrupted="Ctrl-C (SIGINT)")
    dom = dump_dom(page)
    seen = check_attributes(dom)
    assert seen["interrupted"] == "Ctrl-C (SIGINT)" and seen["state"] == "Cancelled"
    assert 'id="interrupted"' in dom and "Interrupted by Ctrl-C (SIGINT)" in dom


def test_ten_thousand_runs_draw_every_bar(tmp_path: Path) -> None:
    """At 10,000 runs every bar is drawn, and the graph is aggregated per task."""
    page = write_report(synthetic_record(10_000), tmp_path / "big.html")
    seen = check_attributes(dump_dom(page))
    assert "errors" not in seen, seen
    assert int(seen["bars"]) == 11_000 and int(seen["runs_with_bars"]) == 10_000
    assert int(seen["lanes"]) == 8
    assert seen["graph_mode"] == "task" and int(seen["graph_nodes"]) == 5
    assert int(seen["failures"]) == 500  # the first 500 shown, the rest counted
