"""
The context variable that names the runs the current code belongs to, for log records.
"""

from __future__ import annotations

import contextvars

__all__ = ["log_names_var"]

# (flow run name, task run name) for log records; task run name is None in a flow body.
log_names_var: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "conveyor_log_names", default=(None, None)
)
