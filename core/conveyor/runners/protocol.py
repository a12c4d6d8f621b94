"""
The runner protocol: the one base class every runner implements, its capabilities and its
concurrency type.

A runner is **configuration** until it is started: an attrs class whose init fields are its
options, picklable and comparable. :meth:`Runner.start` (or ``with runner:``) creates its live
resources (pools, clients, clusters); :meth:`Runner.stop` releases only what it created. A flow
run always starts its own copy (:meth:`Runner.duplicate`), so one runner object can serve many
flow runs at once.

conveyor's engine does the bookkeeping (states, retries, deadlines, dependencies, logging
context); a runner only executes **attempts**. To write one, subclass :class:`Runner` and
implement :meth:`~Runner.execute` (start running an attempt and report how it ended, from any
thread, with ``attempt.succeed``, ``attempt.fail`` or ``attempt.crash``; see
:mod:`conveyor.runners.attempt`), plus
:meth:`~Runner.on_start`, :meth:`~Runner.on_stop` and :meth:`~Runner.cancel` where needed.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

from conveyor.exceptions import RunnerNotStartedError

if TYPE_CHECKING:
    from types import TracebackType

    from conveyor.runners.attempt import Attempt

__all__ = ["Capabilities", "ConcurrencyType", "Runner"]

R = TypeVar("R", bound="Runner")


class ConcurrencyType(str, enum.Enum):
    """How a runner runs submitted work, as in the ancestor's ``TaskConcurrencyType``."""

    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"
    PARALLEL = "parallel"

    def __repr__(self) -> str:
        return f"ConcurrencyType.{self.name}"


@attrs.frozen
class Capabilities:
    """
    What a runner can enforce. The core acts on these instead of silently ignoring an option.

    - ``hard_timeouts``: a run past its timeout is really stopped. Without it the run is still
      marked TimedOut on time, and a warning says its work may still be running.
    - ``cancel_running``: ``cancel()`` stops work that is already running (pending work is
      always stopped).
    - ``native_futures``: a future passed to another task stays on the backend (a Dask future,
      a Ray ObjectRef); the driver never fetches the value.
    - ``resources``: per-task resource requests (``@task(resources=...)``) are honoured. A task
      that asks for resources on a runner without this is refused before it runs.
    - ``isolation``: a task that kills its process does not take the caller down.
    """

    hard_timeouts: bool = False
    cancel_running: bool = False
    native_futures: bool = False
    resources: bool = False
    isolation: bool = False

    def as_dict(self) -> dict[str, bool]:
        """The capabilities as a plain dict."""
        return attrs.asdict(self)


def _restore(cls: type[R], options: dict[str, Any]) -> R:
    return cls(**options)


@attrs.define(kw_only=True, eq=True)
class Runner:
    """
    Base class of every runner.

    Subclasses are ``@attrs.define(kw_only=True)`` classes: their init fields are the options,
    and live resources are fields with ``init=False, eq=False, repr=False``. Set the class
    variables ``name``, ``concurrency`` and ``capabilities``.
    """

    name: ClassVar[str] = "runner"
    concurrency: ClassVar[ConcurrencyType] = ConcurrencyType.SEQUENTIAL
    capabilities: ClassVar[Capabilities] = Capabilities()

    _started: bool = attrs.field(default=False, init=False, eq=False, repr=False)

    # -- configuration ----------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The runner's options, as given to its constructor."""
        return {
            (f.alias or f.name): getattr(self, f.name) for f in attrs.fields(type(self)) if f.init
        }

    def duplicate(self: R) -> R:
        """A new, unstarted runner with the same options."""
        return _restore(type(self), self.options())

    def __reduce__(self) -> tuple[Any, ...]:
        # A runner pickles as its configuration, never its live resources.
        return (_restore, (type(self), self.options()))

    @property
    def started(self) -> bool:
        """Whether the runner is between :meth:`start` and :meth:`stop`."""
        return self._started

    # -- lifecycle --------------------------------------------------------------------------

    def start(self: R) -> R:
        """
        Create the runner's live resources and return the runner. Raises
        :class:`RuntimeError` if it is already started (start a :meth:`duplicate` instead),
        and :class:`~conveyor.BackendUnavailable` if its backend cannot be reached.
        """
        if self._started:
            msg = (
                f"Runner {self!r} is already started; start a copy with `runner.duplicate()` "
                "to use it in two places at once."
            )
            raise RuntimeError(msg)
        try:
            self.on_start()
        except BaseException:
            # Tear down whatever on_start created before it failed; its error is the one raised.
            try:
                self.on_stop()
            except Exception:
                logging.getLogger("conveyor").exception(
                    "Cleaning up runner %r after a failed start failed too.", self.name
                )
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """
        Release what :meth:`start` created; a no-op if not started.

        A Ctrl-C that interrupts :meth:`on_stop` before it returned (a second Ctrl-C just as a
        flow stops its runner, which may land before on_stop ran a line) would leave the
        runner's resources running: ``on_stop`` is then called once more, to release what it
        still holds, and the interrupt propagates.
        """
        if not self._started:
            return
        self._started = False
        returned = False
        try:
            self.on_stop()
            returned = True
        except KeyboardInterrupt:
            if not returned:
                self.on_stop()
            raise

    def __enter__(self: R) -> R:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: R) -> R:
        import anyio.to_thread  # deferred: only async flows need it

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import anyio.to_thread  # deferred: only async flows need it

        await anyio.to_thread.run_sync(self.stop)

    def submit(self, attempt: Attempt) -> None:
        """
        Hand an attempt to the runner. The engine calls this; raises
        :class:`~conveyor.RunnerNotStartedError` when the runner is not started.
        """
        if not self._started:
            msg = (
                f"Runner {self.name!r} is not started, so it cannot run {attempt.name!r}; "
                "use it inside a flow or in `with runner:`."
            )
            raise RunnerNotStartedError(msg)
        self.execute(attempt)

    # -- what a runner implements -----------------------------------------------------------

    def on_start(self) -> None:
        """Create live resources. Called by :meth:`start`."""

    def on_stop(self) -> None:
        """
        Release live resources this runner created, and nothing else. It may be called a
        second time when a Ctrl-C interrupted the first call: release only what is still held.
        """

    def execute(self, attempt: Attempt) -> None:
        """
        Start running ``attempt`` and return; report its end from any thread with
        :meth:`Attempt.succeed`, :meth:`Attempt.fail` or :meth:`Attempt.crash`.

        Must not raise for a problem of this one attempt (report ``crash`` instead). Every
        attempt handed over must be reported exactly once, unless the engine finished it first
        (timeout, cancel): reports after that are ignored.
        """
        raise NotImplementedError

    def upstream_handle(self, attempt: Attempt) -> Any:
        """
        For runners with ``native_futures``: the backend handle of the result of ``attempt``,
        which is still running, so a downstream run can be launched at once and the backend
        orders the two (the handle arrives as :class:`~conveyor.runners.PendingResult`'s
        ``handle`` in the downstream run's arguments). Return None (the default) to have
        downstream runs wait until the upstream run is final.
        """
        return None

    def dashboard_url(self) -> str | None:
        """
        The URL of the backend's dashboard while the runner is started (a Dask cluster's
        ``client.dashboard_link``, Ray's dashboard), or None (the default). ``conveyor run``
        prints it when the flow run starts, and the run record keeps it.
        """
        return None

    def cancel(self, attempt: Attempt) -> bool:
        """
        Stop ``attempt``: drop it if it has not started, interrupt it if it runs and the backend
        can. Return True if the work is stopped (or will never start), False if it may still
        be running. The engine already marked the run; this is about the work.
        """
        return False
