"""
The future of a task run.

A :class:`RunFuture` is what ``task.submit()`` returns. It is resolved by the run's final
:class:`~conveyor.State`; waiting on it blocks on an event, never polls. conveyor's futures are
lighter than :class:`concurrent.futures.Future` (a kept future costs a few hundred bytes);
:mod:`conveyor.waiting` has the exact equivalents of the standard library's ``wait`` and
``as_completed`` for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from conveyor._blocking import current_seceder
from conveyor._interrupts import interrupts, is_real_interrupt
from conveyor.states import FINAL_TYPES, State

if TYPE_CHECKING:
    import asyncio

__all__ = ["Cancellable", "RunFuture"]

T = TypeVar("T")

logger = logging.getLogger("conveyor")

# One lock guards every future's callback list and final transition. Transitions are a few
# attribute writes, so contention stays negligible, and a future needs no lock of its own.
_LOCK = threading.Lock()


class Cancellable(Protocol):
    """What owns a future's run until it is final: the engine's task run, which can cancel it."""

    def cancel(self, message: str = "") -> bool:
        """Cancel the run; see :meth:`RunFuture.cancel`."""
        ...


class RunFuture(Generic[T]):
    """
    The future of one task run.

    ``result()`` waits and returns the value (or raises the run's error); ``wait()`` waits and
    returns the final :class:`~conveyor.State` (or None on timeout) and never raises. A future
    can be awaited in async code, and passed to other tasks as an argument: the downstream run
    starts when this one completed, and receives its value.

    The methods below "driven by the engine" are for the engine and runners, not for flows.
    """

    __slots__ = ("__weakref__", "_callbacks", "_observed", "_owner", "_state", "id", "name")

    def __init__(self, id: str, name: str, state: State[Any], owner: Cancellable | None) -> None:
        self.id = id
        self.name = name
        self._state = state
        self._owner = owner
        self._callbacks: list[Callable[[RunFuture[T]], object]] | None = None
        self._observed = False

    def __repr__(self) -> str:
        return f"<RunFuture {self.name} {self._state.name}>"

    # -- inspection -----------------------------------------------------------------------

    @property
    def state(self) -> State[T]:
        """The run's current state (final or not); reading it counts as checking the run."""
        self._observed = True
        return self._state

    def done(self) -> bool:
        """Whether the run reached a final state."""
        return self._state.type in FINAL_TYPES

    def cancelled(self) -> bool:
        """Whether the run ended CANCELLED."""
        return self._state.is_cancelled()

    def running(self) -> bool:
        """Whether the run is executing now."""
        return self._state.is_running()

    # -- waiting --------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> State[T] | None:
        """
        Wait up to ``timeout`` seconds (forever if None) for the final state; return it, or None
        if the run is not final by then. Never raises.
        """
        self._observed = True
        return self.wait_unobserved(timeout)

    def wait_unobserved(self, timeout: float | None = None) -> State[T] | None:
        """
        Wait like :meth:`wait`, without counting as a check of the run's outcome: for the
        engine and runners, which wait on runs the flow may still never look at.
        """
        if self._state.type in FINAL_TYPES:
            return self._state
        event = threading.Event()
        setter: Callable[[RunFuture[T]], object] = lambda _f: event.set()  # noqa: E731
        if not self.add_callback(setter):
            return self._state
        pool = current_seceder()
        if pool is not None:
            pool.secede()
        try:
            finished = event.wait(timeout)
        finally:
            if pool is not None:
                pool.rejoin()
        if not finished:
            self.remove_callback(setter)
            return self._state if self._state.type in FINAL_TYPES else None
        return self._state

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> T:
        """
        Wait for the run and return its value.

        Raises the run's exception if it did not complete (the task's own exception if it
        FAILED, :class:`~conveyor.CrashedRun`, :class:`~conveyor.CancelledRun` or
        :class:`~conveyor.TimedOutRun` otherwise); with ``raise_on_failure=False`` returns that
        exception instead. Raises :class:`TimeoutError` if the run is not final after
        ``timeout`` seconds.
        """
        state = self.wait(timeout)
        if state is None:
            msg = f"Run {self.name!r} did not finish within {timeout} s; it is {self._state.name}."
            raise TimeoutError(msg)
        value: T = state.result(raise_on_failure=raise_on_failure)
        return value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the run; return the exception it ended with, or None if it completed."""
        state = self.wait(timeout)
        if state is None:
            msg = f"Run {self.name!r} did not finish within {timeout} s; it is {self._state.name}."
            raise TimeoutError(msg)
        return state.exception()

    def __await__(self) -> Generator[Any, None, T]:
        if self._state.type not in FINAL_TYPES:
            yield from self._wait_async().__await__()
        return self.result()

    async def _wait_async(self) -> None:
        import asyncio  # deferred: only awaiting code needs it

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:  # another event loop (trio): wait in a worker thread
            import anyio.to_thread  # deferred: only trio code gets here

            await anyio.to_thread.run_sync(self.wait)
            return
        waiter = loop.create_future()

        def wake(_f: RunFuture[T]) -> None:
            loop.call_soon_threadsafe(_resolve, waiter)

        if self.add_callback(wake):
            await waiter

    # -- cancelling and callbacks ---------------------------------------------------------

    def cancel(self) -> bool:
        """
        Cancel the run. A pending run ends CANCELLED at once and never starts; a running run
        is stopped where the runner can stop it, and ends CANCELLED either way (its state's
        ``reason`` says ``stopped`` or ``not-stopped``). Returns False if the run was already
        final.
        """
        self._observed = True
        owner = self._owner
        if owner is None or self._state.type in FINAL_TYPES:
            return False
        return owner.cancel()

    def add_done_callback(self, fn: Callable[[RunFuture[T]], object]) -> None:
        """
        Call ``fn(future)`` when the run is final (at once if it already is). Exceptions the
        callback raises are logged and ignored.
        """
        if not self.add_callback(fn):
            before = interrupts()
            error = _call_callback(fn, self)
            if error is not None and is_real_interrupt(error, before):
                raise error

    # -- driven by the engine -------------------------------------------------------------

    def add_callback(self, fn: Callable[[RunFuture[T]], object]) -> bool:
        """
        Call ``fn(future)`` when the run is final and return True; return False, and never
        call it, if the run is final already.
        """
        with _LOCK:
            if self._state.type in FINAL_TYPES:
                return False
            if self._callbacks is None:
                self._callbacks = [fn]
            else:
                self._callbacks.append(fn)
            return True

    def remove_callback(self, fn: Callable[[RunFuture[T]], object]) -> None:
        """Forget a callback :meth:`add_callback` added, if it has not been called."""
        with _LOCK:
            if self._callbacks is not None:
                try:
                    self._callbacks.remove(fn)
                except ValueError:
                    pass

    def peek(self) -> State[T]:
        """The current state, without counting as a check of the run (unlike :attr:`state`)."""
        return self._state

    @property
    def observed(self) -> bool:
        """Whether the flow checked this run (its state, result, a wait or a cancel)."""
        return self._observed

    def mark_observed(self) -> None:
        """Count the run as checked: the flow run will not fail for its outcome."""
        self._observed = True

    @property
    def owner(self) -> Cancellable | None:
        """The engine's task run that drives this future; None once it is final."""
        return self._owner

    def settle(self, state: State[Any]) -> bool:
        """
        Move to ``state``. Returns False, changing nothing, if the run is already final: the
        first final state wins.
        """
        with _LOCK:
            if self._state.type in FINAL_TYPES:
                return False
            self._state = state
            if state.type not in FINAL_TYPES:
                return True
            callbacks, self._callbacks = self._callbacks, None
            self._owner = None
        if callbacks:
            before = interrupts()
            interrupted: BaseException | None = None
            for fn in callbacks:
                # Every callback runs, even after one raised: they may be the engine's own.
                error = _call_callback(fn, self)
                if error is not None and is_real_interrupt(error, before):
                    interrupted = error
            if interrupted is not None:
                raise interrupted
        return True


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _call_callback(
    fn: Callable[[RunFuture[Any]], object], future: RunFuture[Any]
) -> BaseException | None:
    """Call a done callback; log what it raises (whatever it is) and return it."""
    try:
        fn(future)
    except BaseException as exc:  # a callback never breaks the future or its engine
        logger.exception("A done callback of %s raised; ignoring it.", future.name)
        return exc
    return None
