"""
:class:`RunHandle`: what the runner keeps of one submitted attempt (``attempt.handle``).
"""

from __future__ import annotations

from typing import Any

import attrs

from conveyor.runners import Attempt

__all__ = ["RunHandle"]


@attrs.define(eq=False, repr=False)
class RunHandle:
    """
    One submission of an attempt as a Dask task (a slotted class): its ``key`` and Dask
    ``future``, and what a resubmission needs (the packed ``payload``, the natively passed
    ``deps``, the ``restrictions`` and how many ``tries`` came before).
    """

    attempt: Attempt
    key: str
    payload: bytes
    deps: list[Any]
    restrictions: dict[str, Any]
    tries: int
    future: Any = None

    def __repr__(self) -> str:
        return f"<RunHandle {self.key} of {self.attempt.name} (try {self.tries})>"
