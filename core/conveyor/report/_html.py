"""
The report's HTML page: the template, with the stylesheet, the script and the data inline.

The data travels in a ``<script type="application/json">`` element, so the browser parses it as
JSON (fast, and never as code); every ``<`` in it is escaped so no string can close the element.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

__all__ = ["render_html"]

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<header><h1>{title}</h1><div id="flow-state"></div></header>
<main>
<section id="summary"><h2>Summary</h2><div id="summary-body"></div></section>
<section id="timeline"><h2>Timeline</h2><div id="legend"></div>
<div id="timeline-wrap"><canvas id="timeline-canvas"></canvas></div>
<div id="tooltip" hidden></div><div id="selected"></div></section>
<section id="concurrency"><h2>Concurrency over time</h2>
<canvas id="concurrency-canvas"></canvas></section>
<section id="failures"><h2>Failures</h2><div id="failures-body"></div></section>
<section id="graph"><h2>Dependencies</h2><p id="graph-note"></p>
<div id="graph-wrap"><canvas id="graph-canvas"></canvas></div></section>
</main>
<div id="report-check" hidden></div>
<script type="application/json" id="report-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


def _asset(name: str) -> str:
    return resources.files("conveyor.report").joinpath(name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    """The self-contained report page for ``data`` (a :func:`report_data` document)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c")  # only inside strings: valid JSON, never "</script>"
    flow = data["flow"]
    title = html.escape(f"conveyor run report: {flow['run']}")
    return _TEMPLATE.format(
        title=title, css=_asset("report.css"), js=_asset("report.js"), data=text
    )
