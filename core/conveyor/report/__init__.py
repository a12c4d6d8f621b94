"""
The run report: one self-contained HTML file that shows a flow run as a timeline.

Ask for it with ``conveyor run FILE:FLOW --report run.html``, ``@flow(report="run.html")``,
``my_flow.with_options(report="run.html")`` or ``flow.create_run(report=...)``; or write one
from any finished run that recorded its runs with :func:`write_report`. The file has its
script, styles and data inline (no network when opened): a timeline with one lane per place
work ran, a summary, the failures with their tracebacks, the dependency graph and the
concurrency over time. Its data is a ``conveyor.report/1`` JSON document (see the README).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from conveyor.exceptions import ConfigError, Terminated
from conveyor.report._data import SCHEMA, report_data
from conveyor.report._html import render_html
from conveyor.run_record import RunRecord

__all__ = [
    "SCHEMA",
    "ReportPath",
    "check_report_path",
    "interrupted_by",
    "render_report_html",
    "write_report",
]

ReportPath = str | os.PathLike[str]


def interrupted_by(error: BaseException | None) -> str | None:
    """The signal a flow run's body ended with, in words (``"Ctrl-C (SIGINT)"``), or None."""
    if isinstance(error, KeyboardInterrupt):
        return "Ctrl-C (SIGINT)"
    if isinstance(error, Terminated):
        return "SIGTERM"
    return None


def check_report_path(path: ReportPath) -> Path:
    """
    The report's path, absolute, once it is known that a file can be written there; raise
    :class:`~conveyor.exceptions.ConfigError` if not (a missing or unwritable folder, a folder
    in the file's place), so that a flow never runs for a report that cannot be kept.
    """
    target = Path(os.fspath(path)).expanduser().absolute()
    folder = target.parent
    if target.is_dir():
        msg = f"Report path {str(target)!r} is a folder; give a file name such as run.html."
        raise ConfigError(msg)
    if not folder.is_dir():
        msg = f"Report folder {str(folder)!r} does not exist; create it or choose another path."
        raise ConfigError(msg)
    try:
        fd, probe = tempfile.mkstemp(prefix=".conveyor-report-", suffix=".tmp", dir=folder)
    except OSError as exc:
        msg = (
            f"Report path {str(target)!r} cannot be written ({exc.strerror or exc}); choose a "
            "folder you can write to."
        )
        raise ConfigError(msg) from exc
    os.close(fd)
    os.unlink(probe)
    if target.exists() and not os.access(target, os.W_OK):
        msg = f"Report file {str(target)!r} is read-only; make it writable or choose another path."
        raise ConfigError(msg)
    return target


def render_report_html(record: RunRecord, *, interrupted: str | None = None) -> str:
    """The report page of ``record``, as text."""
    return render_html(report_data(record, interrupted=interrupted))


def write_report(
    record: RunRecord | Any, path: ReportPath, *, interrupted: str | None = None
) -> Path:
    """
    Write the report of a finished flow run to ``path``, atomically (a temporary file in the
    same folder, renamed over it), and return the path. ``record`` is a
    :class:`~conveyor.run_record.RunRecord` or anything with one as ``.record`` (a
    :class:`~conveyor.FlowRun`). Without ``record_runs`` the report has the summary but no
    timeline. ``interrupted`` names the signal that ended the run, if one did.
    """
    if not isinstance(record, RunRecord):
        record = record.record
    target = Path(os.fspath(path)).expanduser().absolute()
    text = render_report_html(record, interrupted=interrupted)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return target
