"""
The context variables of the code that runs: which runs it belongs to, for log records, and
whether it is sync code, for inline calls of async tasks.
"""

from __future__ import annotations

import contextvars

__all__ = ["log_names_var", "sync_caller_var"]

# (flow run name, task run name) for log records; task run name is None in a flow body.
log_names_var: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "conveyor_log_names", default=(None, None)
)

# True while a sync flow body or a sync task runs: an async task it calls inline runs to its
# value, even when an event loop runs in the thread (a notebook); async code gets an awaitable.
sync_caller_var: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "conveyor_sync_caller", default=False
)
