"""
Results that stay in Ray's object store until someone asks for them.
"""

from __future__ import annotations

import sys
from typing import Any

from conveyor import CrashReason
from conveyor.exceptions import CrashedRun
from conveyor.states import ResultRef
from conveyor_ray._faults import classify
from conveyor_ray._session import Session, gone, is_current, mark_lost

__all__ = ["RayResult"]

# ray.get waits in steps this long, so a shutdown or a lost cluster is noticed between steps
# instead of surfacing as SystemExit in the caller's thread.
_GET_STEP = 2.0


class RayResult(ResultRef[Any]):
    """
    The value of a completed Ray run, held as an ``ObjectRef``.

    :meth:`get` fetches it (``state.result()`` and ``future.result()`` call it); passed to
    another task on the same Ray runner it travels as the ``ObjectRef`` itself, so the value
    goes from worker to worker and never through the driver.
    """

    __slots__ = ("name", "object_ref", "session")

    def __init__(self, object_ref: Any, name: str, session: Session) -> None:
        self.object_ref = object_ref
        self.name = name
        self.session = session

    def __repr__(self) -> str:
        return f"<RayResult of {self.name} {self.object_ref!r}>"

    def get(self) -> Any:
        """
        Fetch the value from the object store. Raises :class:`~conveyor.CrashedRun`
        (``backend-lost`` or ``worker-died``) if it can no longer be had.
        """
        session = self.session
        if not is_current(session):
            raise CrashedRun(self._gone(session), CrashReason.BACKEND_LOST)
        ray = sys.modules["ray"]
        while True:
            try:
                return ray.get(self.object_ref, timeout=_GET_STEP)
            except ray.exceptions.GetTimeoutError:
                why = gone(session, ray, probe=True)
                if why is not None:
                    mark_lost(session, why)
                    raise CrashedRun(self._gone(session), CrashReason.BACKEND_LOST) from None
                if not is_current(session):
                    raise CrashedRun(self._gone(session), CrashReason.BACKEND_LOST) from None
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                fault = classify(exc, ray, self.name)
                if fault.lost or not is_current(session):
                    raise CrashedRun(self._gone(session), CrashReason.BACKEND_LOST) from exc
                msg = f"The result of {self.name!r} could not be fetched: {fault.message}"
                raise CrashedRun(msg, fault.reason) from exc

    @classmethod
    def get_many(cls, refs: list[ResultRef[Any]]) -> list[Any]:
        """Fetch many values with one ``ray.get`` per session; failures fall back to :meth:`get`."""
        out: list[Any] = [None] * len(refs)
        sessions: dict[int, list[int]] = {}
        for i, ref in enumerate(refs):
            assert isinstance(ref, RayResult)
            sessions.setdefault(id(ref.session), []).append(i)
        ray = sys.modules.get("ray")
        for indexes in sessions.values():
            session = refs[indexes[0]].session  # type: ignore[attr-defined]
            values: list[Any] | None = None
            if ray is not None and is_current(session):
                try:
                    values = ray.get(
                        [refs[i].object_ref for i in indexes],  # type: ignore[attr-defined]
                        timeout=_GET_STEP * 30,
                    )
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    values = None  # one of them is gone or slow: ask each on its own
            for n, i in enumerate(indexes):
                if values is not None:
                    out[i] = values[n]
                    continue
                try:
                    out[i] = refs[i].get()
                except Exception as exc:
                    out[i] = exc
        return out

    def _gone(self, session: Session) -> str:
        why = session.lost or "no longer connected (its runner stopped when the flow ended)"
        return (
            f"The result of {self.name!r} lived in {session.describe()}, which is {why}; "
            "fetch results inside the flow, or keep a Ray connection open around it."
        )
