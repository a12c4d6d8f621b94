"""
The plugin host: hook specifications, the runner registry, and entry-point loading.
"""

from __future__ import annotations

from conveyor.plugins.hookspecs import hookimpl, hookspec
from conveyor.plugins.manager import PluginHost, PluginProblem, get_host, use_host
from conveyor.plugins.registry import RunnerEntry, RunnerRegistry

__all__ = [
    "PluginHost",
    "PluginProblem",
    "RunnerEntry",
    "RunnerRegistry",
    "get_host",
    "hookimpl",
    "hookspec",
    "use_host",
]
