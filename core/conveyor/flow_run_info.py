"""
The frozen record of a flow run that observers (plugin hooks) receive.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["FlowRunInfo"]


@attrs.frozen(kw_only=True)
class FlowRunInfo:
    """
    Which flow run this is, as a value: what ``conveyor_flow_run_started`` and
    ``conveyor_flow_run_finished`` hooks are given, never the live run.

    ``runner`` is the flow run's own started runner (its configuration and capabilities); a
    hook reads it, and never starts or stops it.
    """

    id: str
    name: str
    flow_name: str
    runner_name: str
    runner: Any = attrs.field(eq=False, repr=False)
