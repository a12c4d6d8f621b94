"""
What a person sees while a flow runs, and after: live progress, the end-of-run report, the
JSON summary, the CLI's log handler and typed flow parameters.
"""

from __future__ import annotations

__all__: list[str] = []
