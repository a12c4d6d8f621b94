"""
The Ray runner's tests. A package, so that its modules are ``tests.ray.*``: the Ray workers
import the task module as ``tests.ray._tasks`` from the repository root on their path.
"""

from __future__ import annotations
