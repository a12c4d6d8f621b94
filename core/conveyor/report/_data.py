"""
The report's data: one compact JSON document built from a :class:`~conveyor.run_record.RunRecord`.

Compact so that 10,000 runs stay well under a megabyte: every repeated string (task names,
state names, places, messages) is interned in one ``strings`` table and referred to by index;
runs and attempts are columns (one array per field) rather than one object per row; times are
milliseconds since the flow run started, rounded to 0.1 ms.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from conveyor.exceptions import safe_str, shorten
from conveyor.redact import redact, redact_options
from conveyor.run_record import TRACEBACKS, RunRecord

__all__ = ["SCHEMA", "report_data"]

#: The report document's schema name.
SCHEMA = "conveyor.report/1"
#: The longest traceback or message kept, in characters.
_LONGEST = 6000


class _Strings:
    """An interning table: each distinct string once, referred to by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, text: str | None) -> int:
        """The index of ``text``; -1 for None."""
        if text is None:
            return -1
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.table)
            self.table.append(text)
        return i


def _ms(t: float | None, origin: float) -> float | None:
    return None if t is None else round((t - origin) * 1000.0, 1)


def _option(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_option(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _option(v) for k, v in value.items()}
    return safe_str(value)


def _flow(record: RunRecord, interrupted: str | None) -> dict[str, Any]:
    state = record.state
    started = record.started
    return {
        "name": record.flow_name,
        "run": record.flow_run_name,
        "runner": record.runner_name,
        "options": _option(redact_options(record.runner_options)),
        "dashboard": None if record.dashboard is None else redact(record.dashboard),
        "state": "Cancelled" if interrupted else "Running" if state is None else state.name,
        "state_type": "CANCELLED"
        if interrupted
        else "RUNNING"
        if state is None
        else state.type.value,
        "message": f"Interrupted by {interrupted}."
        if interrupted
        else ""
        if state is None
        else shorten(safe_str(state.message), _LONGEST),
        "interrupted": interrupted,
        "started_at": None
        if started is None
        else datetime.fromtimestamp(record.wall_origin + started, timezone.utc).isoformat(),
        "elapsed_ms": None if record.elapsed is None else round(record.elapsed * 1000.0, 1),
    }


def _tasks(record: RunRecord) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "runs": s.runs,
            "states": dict(sorted(s.states.items())),
            "median_ms": None if s.median is None else round(s.median * 1000.0, 1),
            "longest_ms": None if s.longest is None else round(s.longest * 1000.0, 1),
        }
        for name, s in sorted(record.tasks.items())
    ]


def report_data(record: RunRecord, *, interrupted: str | None = None) -> dict[str, Any]:
    """
    The report document of ``record`` (see the README's "The run report" for its fields).
    ``interrupted`` names the signal that ended the flow run (``"SIGINT (Ctrl-C)"``), if any.
    """
    runs = list(record.iter_task_runs())
    origin = record.started
    if origin is None:
        origin = min((r.submitted for r in runs), default=0.0)
    s = _Strings()
    order = {r.id: i for i, r in enumerate(runs)}
    name: list[str] = []
    task: list[int] = []
    state: list[int] = []
    submitted: list[float | None] = []
    end: list[float | None] = []
    message: list[int] = []
    reason: list[int] = []
    upstream: list[list[int]] = []
    a_run: list[int] = []
    a_number: list[int] = []
    a_start: list[float | None] = []
    a_end: list[float | None] = []
    a_where: list[int] = []
    a_state: list[int] = []
    for i, r in enumerate(runs):
        name.append(r.name)
        task.append(s(r.task_name))
        state.append(s(r.state))
        submitted.append(_ms(r.submitted, origin))
        end.append(_ms(r.end, origin))
        message.append(s(shorten(safe_str(r.message), _LONGEST)) if r.message else -1)
        reason.append(s(r.reason))
        ups = [order[u] for u in r.upstream if u in order]
        upstream.append(ups)
        for a in r.attempts:
            a_run.append(i)
            a_number.append(a.number)
            a_start.append(_ms(a.start, origin))
            a_end.append(_ms(a.end, origin))
            a_where.append(s(a.where))
            a_state.append(s(a.state))
    failures = [
        {
            "name": f.name,
            "task": f.task_name,
            "state": f.state,
            "message": shorten(safe_str(f.message), _LONGEST),
            "reason": f.reason,
            "origin": f.origin,
            "traceback": None
            if f.traceback is None or k >= TRACEBACKS
            else shorten(f.traceback, _LONGEST),
        }
        for k, f in enumerate(record.failures)
    ]
    return {
        "schema": SCHEMA,
        "flow": _flow(record, interrupted),
        "recorded": record.task_runs is not None,
        "tasks": _tasks(record),
        "counts": record.counts(),
        "strings": s.table,
        "runs": {
            "name": name,
            "task": task,
            "state": state,
            "submitted": submitted,
            "end": end,
            "message": message,
            "reason": reason,
            "upstream": upstream,
        },
        "attempts": {
            "run": a_run,
            "number": a_number,
            "start": a_start,
            "end": a_end,
            "where": a_where,
            "state": a_state,
        },
        "failures": failures,
    }
