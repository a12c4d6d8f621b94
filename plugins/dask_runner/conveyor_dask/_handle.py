"""
:class:`RunHandle`: what the runner keeps of one submitted attempt (``attempt.handle``).
"""

from __future__ import annotations

from typing import Any

from conveyor.runners import Attempt

__all__ = ["RunHandle"]


class RunHandle:
    """
    One submission of an attempt as a Dask task: its ``key`` and Dask ``future``, and what a
    resubmission needs (the packed ``payload``, the natively passed ``deps``, the
    ``restrictions`` and how many ``tries`` came before).
    """

    __slots__ = ("attempt", "deps", "future", "key", "payload", "restrictions", "tries")

    def __init__(
        self,
        attempt: Attempt,
        key: str,
        payload: bytes,
        deps: list[Any],
        restrictions: dict[str, Any],
        tries: int,
    ) -> None:
        self.attempt = attempt
        self.key = key
        self.payload = payload
        self.deps = deps
        self.restrictions = restrictions
        self.tries = tries
        self.future: Any = None

    def __repr__(self) -> str:
        return f"<RunHandle {self.key} of {self.attempt.name} (try {self.tries})>"
