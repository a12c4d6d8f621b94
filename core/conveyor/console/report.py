"""
The end-of-run report ``conveyor run`` prints, and the JSON document ``conveyor run --json``
prints instead, both drawn from a :class:`~conveyor.run_record.RunRecord`.

The report::

    flow run etl-1a2b3c4d on concurrent: Failed in 2.31 s
      2 task run(s) did not complete and the flow never checked them: ...
      task runs: 198 Completed, 2 Failed
      task    runs  Completed  Failed  median  longest
      fetch    100        100       0   12 ms    80 ms
      parse    100         98       2    3 ms     9 ms
      slowest: fetch-17 80 ms, fetch-3 75 ms, parse-40 9 ms
      failed or crashed:
        parse-12 Failed: ValueError: bad page (pipeline.py:14 in parse)
      result: None
"""

from __future__ import annotations

import json
import math
import reprlib
from datetime import datetime, timezone
from typing import Any

from conveyor.exceptions import safe_str
from conveyor.redact import redact, redact_options
from conveyor.run_record import RunRecord
from conveyor.states import State

__all__ = ["JSON_SCHEMA", "MAX_LISTED", "format_seconds", "render_report", "summary", "value_repr"]

#: The ``schema`` of the document ``conveyor run --json`` prints.
JSON_SCHEMA = "conveyor.run/1"
#: How many failed runs the report lists (the JSON lists them all).
MAX_LISTED = 10
MAX_REPR = 200

_repr = reprlib.Repr()
_repr.maxstring = MAX_REPR
_repr.maxother = MAX_REPR
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 20


def value_repr(value: Any) -> str:
    """The repr of a flow's return value, cut short (never raising)."""
    try:
        text = _repr.repr(value)
    except BaseException as exc:  # a hostile __repr__ may raise anything
        return f"<{type(value).__name__}.__repr__ raised {type(exc).__name__}>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def format_seconds(seconds: float | None) -> str:
    """``0.4 ms``, ``12 ms``, ``2.3 s``, ``4m 05s``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def render_report(record: RunRecord, state: State[Any], value: Any = None) -> str:
    """The text report of a finished flow run (``value`` is its return value, if completed)."""
    elapsed = record.elapsed
    took = "" if elapsed is None else f" in {format_seconds(elapsed)}"
    lines = [f"flow run {record.flow_run_name} on {record.runner_name}: {state.name}{took}"]
    if state.message and not state.is_completed():
        lines.append(f"  {state.message}")
    counts = record.counts()
    runs = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no task runs"
    lines.append(f"  task runs: {runs}")
    if record.tasks:
        names = sorted(counts)
        rows = [["task", "runs", *names, "median", "longest"]]
        for task_name, s in sorted(record.tasks.items()):
            rows.append(
                [
                    task_name,
                    str(s.runs),
                    *(str(s.states.get(n, 0)) for n in names),
                    format_seconds(s.median),
                    format_seconds(s.longest),
                ]
            )
        lines += ["  " + line for line in _table(rows)]
    if record.slowest:
        slow = ", ".join(f"{name} {format_seconds(t)}" for t, name, _ in record.slowest)
        lines.append(f"  slowest: {slow}")
    failed = [f for f in record.failures if f.state not in ("Cancelled", "NotRun")]
    if failed:
        lines.append("  failed or crashed:")
        for f in failed[:MAX_LISTED]:
            where = f" ({f.origin})" if f.origin else ""
            reason = f" [{f.reason}]" if f.reason and f.state == "Crashed" else ""
            lines.append(f"    {f.name} {f.state}{reason}: {f.message}{where}")
        if len(failed) > MAX_LISTED:
            lines.append(f"    ... and {len(failed) - MAX_LISTED} more (--json lists them all)")
    if state.is_completed():
        lines.append(f"  result: {value_repr(value)}")
    return redact("\n".join(lines))  # passwords in addresses, in messages


def _iso(record: RunRecord, t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(record.wall_origin + t, timezone.utc).isoformat()


def _jsonable(value: Any) -> tuple[bool, Any]:
    try:
        return True, json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False, None


def _option(value: Any) -> Any:
    is_json, as_json = _jsonable(value)
    return as_json if is_json else safe_str(value)


def _masked(text: str | None) -> str | None:
    return None if text is None else redact(text)


def _number(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 6)


def summary(record: RunRecord, state: State[Any], value: Any = None) -> dict[str, Any]:
    """The JSON document of a finished flow run (its schema is in the README)."""
    is_json, as_json = _jsonable(value) if state.is_completed() else (False, None)
    return {
        "schema": JSON_SCHEMA,
        "flow": record.flow_name,
        "flow_run": record.flow_run_name,
        "runner": record.runner_name,
        "runner_options": redact_options({k: _option(v) for k, v in record.runner_options.items()}),
        "dashboard": _masked(record.dashboard),
        "state": state.name,
        "state_type": state.type.value,
        "message": _masked(state.message),
        "started_at": _iso(record, record.started),
        "ended_at": _iso(record, record.ended),
        "elapsed_seconds": _number(record.elapsed),
        "task_runs": record.counts(),
        "tasks": {
            name: {
                "runs": s.runs,
                "states": dict(sorted(s.states.items())),
                "median_seconds": _number(s.median),
                "longest_seconds": _number(s.longest),
            }
            for name, s in sorted(record.tasks.items())
        },
        "slowest": [
            {"name": name, "task": task_name, "seconds": _number(t)}
            for t, name, task_name in record.slowest
        ],
        "failures": [
            {
                "name": f.name,
                "task": f.task_name,
                "state": f.state,
                "message": _masked(f.message),
                "reason": f.reason,
                "origin": f.origin,
            }
            for f in record.failures
        ],
        "result": {
            "json": as_json,
            "is_json": is_json,
            "repr": value_repr(value) if state.is_completed() else None,
        },
    }
