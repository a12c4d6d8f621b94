"""
:class:`DaskResult`: the result of a completed run, kept on the Dask cluster until asked for.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from conveyor.exceptions import CrashedRun
from conveyor.states import CrashReason, ResultRef

__all__ = ["Batch", "DaskResult"]

_UNSET: Any = object()

#: The reason of the CrashedRun that ``get()`` raises when the value is gone. Not a
#: CrashReason: the run itself stays COMPLETED; only its value was lost.
RESULT_LOST = CrashReason.RESULT_LOST


class Batch(Protocol):
    """Where a small result finds the other small results to fetch with it."""

    def take(self) -> list[DaskResult]:
        """Small results of the same client not fetched yet (the oldest first), now owned by the caller."""
        ...


def _gather_into(refs: list[DaskResult]) -> None:
    """Fetch the values of ``refs`` (of one client) with one ``client.gather``, and keep them."""
    live = [(r, f) for r in refs if (f := r.future) is not None and r.client is not None]
    if not live:
        return
    try:
        values = live[0][0].client.gather([f for _, f in live])
    except Exception:
        return  # one is gone: each get() then asks on its own, and says which
    for (ref, _), value in zip(live, values, strict=True):
        ref.keep(value)


class DaskResult(ResultRef[Any]):
    """
    A completed run's value, held on a Dask worker by ``future``.

    The driver fetches it only in :meth:`get` (then keeps it, and releases the Dask copy).
    Until then, a downstream run on the same runner receives the Dask future itself, so the
    value moves from worker to worker. :meth:`get` raises :class:`~conveyor.CrashedRun`
    (``result-lost``) when the value is gone: its worker died (conveyor never lets Dask
    recompute a completed run), or the runner that owned the cluster stopped.

    A small result (see :mod:`conveyor_dask._prefetch`) has a ``batch``: the first :meth:`get`
    fetches, in the same ``client.gather``, the other small results completed so far, so
    ``[f.result() for f in futures]`` costs a round trip per batch, not one per run.
    """

    __slots__ = ("__weakref__", "_lock", "_value", "batch", "client", "future", "name")

    def __init__(self, future: Any, client: Any, name: str, batch: Batch | None = None) -> None:
        self.future: Any = future
        self.client = client
        self.name = name
        self.batch = batch
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
        batch, self.batch = self.batch, None
        if batch is not None and self._value is _UNSET:
            others = batch.take()
            if others:
                _gather_into([self, *others])
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
                _gather_into([refs[i] for i in indexes])  # type: ignore[misc]
            for i in indexes:
                try:
                    out[i] = refs[i].get()
                except Exception as exc:
                    out[i] = exc
        return out

    def keep(self, value: Any) -> None:
        """Keep ``value`` (fetched by someone else) as this result's, and release the Dask copy."""
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
        self.client = self.batch = None
        self.name = state["name"]
        self._value = state["value"] if state["fetched"] else _UNSET
        self._lock = threading.Lock()
