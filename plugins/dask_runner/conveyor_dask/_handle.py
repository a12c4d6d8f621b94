"""
:class:`RunHandle`: what the runner keeps of one submitted attempt (``attempt.handle``).
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["RunHandle"]


@attrs.define(eq=False, repr=False)
class RunHandle:
    """
    One submission of an attempt as a Dask task (a slotted class): its ``key`` and Dask
    ``future``, and what a resubmission needs (the packed ``payload``, the natively passed
    ``deps``, the ``restrictions`` and how many ``tries`` came before).

    It does not point back at its attempt: ``attempt.handle`` points here, and a cycle would
    keep a finished chain's Dask futures (and their values on the workers) alive until the
    garbage collector runs, instead of releasing each one when nothing refers to it.
    """

    key: str
    payload: bytes
    deps: list[Any]
    restrictions: dict[str, Any]
    tries: int
    future: Any = None

    def __repr__(self) -> str:
        return f"<RunHandle {self.key} (try {self.tries})>"
