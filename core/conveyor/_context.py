"""
Context variables: the flow run and task run the current code belongs to.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.flows import FlowRun

# The flow run whose body (or one of whose tasks) is running in this context.
flow_run_var: contextvars.ContextVar[FlowRun | None] = contextvars.ContextVar(
    "conveyor_flow_run", default=None
)
# (flow run name, task run name) for log records; task run name is None in a flow body.
log_names_var: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "conveyor_log_names", default=(None, None)
)
