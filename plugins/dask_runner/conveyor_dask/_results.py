"""
:class:`DaskResult`: the result of a completed run, kept on the Dask cluster until asked for.
"""

from __future__ import annotations

import threading
from typing import Any

from conveyor.exceptions import CrashedRun
from conveyor.states import CrashReason, ResultRef

__all__ = ["DaskResult"]

_UNSET: Any = object()

#: The reason of the CrashedRun that ``get()`` raises when the value is gone. Not a
#: CrashReason: the run itself stays COMPLETED; only its value was lost.
RESULT_LOST = CrashReason.RESULT_LOST


class DaskResult(ResultRef[Any]):
    """
    A completed run's value, held on a Dask worker by ``future``.

    The driver fetches it only in :meth:`get` (then keeps it, and releases the Dask copy).
    Until then, a downstream run on the same runner receives the Dask future itself, so the
    value moves from worker to worker. :meth:`get` raises :class:`~conveyor.CrashedRun`
    (``result-lost``) when the value is gone: its worker died (conveyor never lets Dask
    recompute a completed run), or the runner that owned the cluster stopped.
    """

    __slots__ = ("__weakref__", "_lock", "_value", "client", "future", "name")

    def __init__(self, future: Any, client: Any, name: str) -> None:
        self.future: Any = future
        self.client = client
        self.name = name
        self._value: Any = _UNSET
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = "fetched" if self._value is not _UNSET else "on the cluster"
        return f"<DaskResult of {self.name} ({where})>"

    @property
    def fetched(self) -> bool:
        """Whether the value was fetched to this process."""
        return self._value is not _UNSET

    def get(self) -> Any:
        with self._lock:
            if self._value is not _UNSET:
                return self._value
            future = self.future
            try:
                value = future.result()
            except (KeyboardInterrupt, SystemExit):  # pragma: no cover - the user's own
                raise
            except BaseException as exc:
                msg = (
                    f"The result of {self.name!r} is no longer on the Dask cluster "
                    f"({type(exc).__name__}: {exc}); the worker holding it died or the runner "
                    "stopped. Fetch results inside the flow (future.result()) to keep them."
                )
                raise CrashedRun(msg, RESULT_LOST) from None
            self._value = value
            self.future = None
            try:
                future.release()
            except Exception:  # pragma: no cover - a closed client
                pass
            return value

    @classmethod
    def get_many(cls, refs: list[ResultRef[Any]]) -> list[Any]:
        """Fetch the values of many runs with one ``client.gather`` per client."""
        out: list[Any] = [None] * len(refs)
        batches: dict[int, list[int]] = {}
        for i, ref in enumerate(refs):
            assert isinstance(ref, DaskResult)
            if ref.fetched or ref.future is None or ref.client is None:
                batches.setdefault(0, []).append(i)  # get() answers these alone
            else:
                batches.setdefault(id(ref.client), []).append(i)
        for key, indexes in batches.items():
            if key != 0:
                client = refs[indexes[0]].client  # type: ignore[attr-defined]
                try:
                    values = client.gather([refs[i].future for i in indexes])  # type: ignore[attr-defined]
                except Exception:
                    values = None  # one is gone: fall back to asking each on its own
                if values is not None:
                    for i, value in zip(indexes, values, strict=True):
                        refs[i]._keep(value)  # type: ignore[attr-defined]
            for i in indexes:
                try:
                    out[i] = refs[i].get()
                except Exception as exc:
                    out[i] = exc
        return out

    def _keep(self, value: Any) -> None:
        with self._lock:
            if self._value is _UNSET:
                future, self.future, self._value = self.future, None, value
                try:
                    future.release()
                except Exception:  # pragma: no cover - a closed client
                    pass

    def __getstate__(self) -> Any:
        # Pickles as its value when fetched, else as the Dask future (usable on the cluster).
        return {
            "future": self.future,
            "value": self._value if self.fetched else None,
            "fetched": self.fetched,
            "name": self.name,
        }

    def __setstate__(self, state: Any) -> None:
        self.future = state["future"]
        self.client = None
        self.name = state["name"]
        self._value = state["value"] if state["fetched"] else _UNSET
        self._lock = threading.Lock()
