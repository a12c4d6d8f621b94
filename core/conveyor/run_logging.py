"""
Run-aware logging.

Every log record carries ``flow_run_name`` and ``task_run_name`` attributes (the run's names in a
flow or task run, None outside one), whatever logger made it, so a format such as
:data:`RUN_FORMAT` works for every record: importing this module installs the record factory
that adds them. For records made without it (built by hand with ``logging.makeLogRecord``, or in
a process that never imported conveyor) :func:`run_formatter` fills in defaults. Records that
tasks log on remote workers are sent back with the run's outcome and handled again by the
driver's loggers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from conveyor._context import log_names_var

__all__ = [
    "RUN_DEFAULTS",
    "RUN_FORMAT",
    "get_run_logger",
    "install_record_factory",
    "run_formatter",
]

RUN_FORMAT = "%(asctime)s %(levelname)s [%(flow_run_name)s/%(task_run_name)s] %(name)s: %(message)s"
#: The run names of a record made outside any run.
RUN_DEFAULTS: dict[str, Any] = {"flow_run_name": None, "task_run_name": None}

_install_lock = threading.Lock()
_installed = False


def install_record_factory() -> None:
    """
    Wrap the logging record factory so records carry the run names; idempotent.

    conveyor calls this when a flow run starts; the wrapper keeps any factory installed before.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if not hasattr(record, "flow_run_name"):
                record.flow_run_name, record.task_run_name = log_names_var.get()
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def run_formatter(fmt: str = RUN_FORMAT, datefmt: str | None = None) -> logging.Formatter:
    """A formatter for ``fmt`` that shows None for run names a record lacks, never raising."""
    return logging.Formatter(fmt, datefmt, defaults=RUN_DEFAULTS)


def get_run_logger(name: str = "conveyor.runs") -> logging.Logger:
    """
    Return a logger for use inside tasks and flows.

    Its records carry ``flow_run_name`` and ``task_run_name`` and reach the driver's handlers on
    every runner. It is a plain :class:`logging.Logger`; any stdlib logger works the same way.
    """
    install_record_factory()
    return logging.getLogger(name)


install_record_factory()  # so RUN_FORMAT works for every record made from now on
