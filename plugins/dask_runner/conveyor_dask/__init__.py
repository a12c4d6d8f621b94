"""
conveyor-dask: the ``dask`` runner for conveyor.

Importing this package is cheap: ``distributed`` is imported only when a runner starts.

>>> from conveyor_dask import DaskRunner
>>> DaskRunner(address="tcp://127.0.0.1:8786").name
'dask'
"""

from __future__ import annotations

from conveyor_dask._results import DaskResult
from conveyor_dask._version import __version__
from conveyor_dask.runner import DaskRunner

__all__ = ["DaskResult", "DaskRunner", "__version__"]
