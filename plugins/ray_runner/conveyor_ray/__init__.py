"""
conveyor-ray: the ``ray`` runner for conveyor.

Importing this package is cheap: ``ray`` is imported only when a runner starts.

>>> from conveyor_ray import RayRunner
>>> RayRunner(address="127.0.0.1:6379").name
'ray'
"""

from __future__ import annotations

from conveyor_ray._results import RayResult
from conveyor_ray._version import __version__
from conveyor_ray.runner import RayRunner, ray_options_for

__all__ = ["RayResult", "RayRunner", "__version__", "ray_options_for"]
