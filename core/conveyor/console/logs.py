"""
The one log handler ``conveyor run`` installs: records at ``--log-level`` (default INFO) and
above, on stderr, with the run's names, the level coloured in a terminal (unless ``NO_COLOR``
is set)::

    12:03:04 INFO    [etl-1a2b3c4d/fetch-3] conveyor.runs: fetched 200 rows
    12:03:04 WARNING [etl-1a2b3c4d] conveyor: 'fetch-9' did not finish within its timeout

It writes to whatever ``sys.stderr`` is at the moment, so the live progress display keeps its
lines below the log.
"""

from __future__ import annotations

import logging
import os
import sys

from conveyor.exceptions import ConfigError
from conveyor.redact import redact

__all__ = ["LEVELS", "CliFormatter", "CliHandler", "install", "uninstall"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_COLOURS = {
    logging.DEBUG: "\x1b[2m",
    logging.INFO: "\x1b[36m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_RESET = "\x1b[0m"


class CliFormatter(logging.Formatter):
    """
    ``time LEVEL [flow run/task run] logger: message``; names left out outside a run; the
    passwords of addresses masked (:func:`conveyor.redact.redact`).
    """

    def __init__(self, colour: bool) -> None:
        super().__init__(datefmt="%H:%M:%S")
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        flow_run = getattr(record, "flow_run_name", None)
        task_run = getattr(record, "task_run_name", None)
        names = (
            "" if flow_run is None else f"[{flow_run}{'' if task_run is None else '/' + task_run}] "
        )
        level = f"{record.levelname:<7}"
        if self.colour:
            level = f"{_COLOURS.get(record.levelno, '')}{level}{_RESET}"
        text = f"{self.formatTime(record, self.datefmt)} {level} {names}{record.name}: {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        return redact(text)  # passwords in addresses and secret query parameters


class CliHandler(logging.Handler):
    """Writes records to the current ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _colour() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def install(level: str = "INFO") -> CliHandler:
    """
    Put one :class:`CliHandler` on the root logger at ``level``; returns it for
    :func:`uninstall`. Raises :class:`~conveyor.ConfigError` for a level that is not a name.
    """
    name = level.strip().upper()
    if name not in LEVELS:
        msg = f"Log level {level!r} is not a level; give one of {', '.join(LEVELS)}."
        raise ConfigError(msg)
    handler = CliHandler(getattr(logging, name))
    handler.setFormatter(CliFormatter(_colour()))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(handler.level)
    return handler


def uninstall(handler: CliHandler) -> None:
    """Take the handler off the root logger again."""
    logging.getLogger().removeHandler(handler)
