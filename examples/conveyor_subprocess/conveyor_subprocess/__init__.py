"""
conveyor-subprocess: a conveyor runner that runs each task attempt in a fresh Python process.

Select it by name, e.g. ``CONVEYOR_RUNNER=subprocess python pipeline.py``, or use it in code::

    from conveyor import flow
    from conveyor_subprocess import SubprocessRunner

    @flow(runner=SubprocessRunner(max_workers=4))
    def pipeline() -> None: ...
"""

from __future__ import annotations

from conveyor_subprocess.runner import SubprocessRunner

__all__ = ["SubprocessRunner", "__version__"]

__version__ = "0.1.0"
