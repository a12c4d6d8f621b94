"""
The envelope for runners that execute tasks in other processes (Dask, Ray, a subprocess): one
import point for their authors.

The driver packs each attempt with :func:`pack_call`; the worker runs :func:`run_packed`
instead of the user function; the driver turns what came back into the run's state with
:func:`report_outcome`. The envelope is why remote runners are honest about failures:

- everything the user's function raises comes back as data (FAILED), while anything the
  backend raises is infrastructure (CRASHED);
- ``SystemExit`` and ``KeyboardInterrupt`` inside a task are caught on the worker (CRASHED,
  ``system-exit``/``interrupted``) and never kill it;
- arguments that cannot be pickled are caught at submit (``argument-serialization``), arguments
  that cannot be unpickled on the worker (``argument-deserialization``), results that cannot be
  pickled or unpickled (``result-serialization``/``result-deserialization``) on the worker,
  before the run is reported COMPLETED; a generator is never mistaken for its first item;
- log records the task makes on the worker are shipped back and handled by the driver's
  loggers, with the run's names.

Modules: :mod:`~conveyor.runners.remote.pickling` (dumps, loads, caches),
:mod:`~conveyor.runners.remote.envelope` (packing), :mod:`~conveyor.runners.remote.worker`
(the worker side), :mod:`~conveyor.runners.remote.driver` (the driver side).
"""

from __future__ import annotations

from conveyor.runners.remote.driver import replay_records, report_outcome
from conveyor.runners.remote.envelope import Dep, Outcome, describe_type, pack_call, pack_or_crash
from conveyor.runners.remote.pickling import (
    PLAIN_TYPES,
    PackError,
    dumps,
    function_bytes,
    load_function,
    loads,
)
from conveyor.runners.remote.worker import run_call, run_packed

__all__ = [
    "PLAIN_TYPES",
    "Dep",
    "Outcome",
    "PackError",
    "describe_type",
    "dumps",
    "function_bytes",
    "load_function",
    "loads",
    "pack_call",
    "pack_or_crash",
    "replay_records",
    "report_outcome",
    "run_call",
    "run_packed",
]
