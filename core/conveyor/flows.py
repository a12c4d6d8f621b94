"""
Flows: functions whose body submits task runs, on one runner per flow run.

A flow run resolves its runner by name (see :mod:`conveyor.config`), starts its own copy,
runs the body, waits for every task run the body submitted, and stops the runner (see
:class:`~conveyor.FlowRun`). Its final state is FAILED if the body raised, or if a submitted run
did not complete and the body never looked at that run's result or state.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from conveyor.exceptions import ConfigError
from conveyor.flow_run import FlowRun
from conveyor.flow_run_info import FlowRunInfo
from conveyor.runners.attempt import is_async_callable
from conveyor.runners.protocol import Runner
from conveyor.states import State
from conveyor.tasks import flow_run_var

if TYPE_CHECKING:
    from conveyor.report import ReportPath

__all__ = ["PROGRESS_ENV", "Flow", "FlowRun", "current_flow_run", "flow", "progress_wanted"]

#: ``CONVEYOR_PROGRESS=1`` shows live progress for every flow run (``0`` for none).
PROGRESS_ENV = "CONVEYOR_PROGRESS"


def progress_wanted(explicit: bool | None) -> bool:
    """Whether a flow run shows progress: ``explicit`` if given, else ``CONVEYOR_PROGRESS``."""
    if explicit is not None:
        return explicit
    return os.environ.get(PROGRESS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("conveyor")

RunnerSpec = str | Runner | None


class Flow(Generic[P, R]):
    """
    A function whose body submits task runs. Create one with :func:`flow`.

    Calling it runs it: it returns the body's value, or raises if the flow run FAILED. With
    ``return_state=True`` it returns the final :class:`~conveyor.State` instead. An async flow
    returns a coroutine.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        runner: RunnerSpec = None,
        progress: bool | None = None,
        log_prints: bool = False,
        record_runs: bool = False,
        report: ReportPath | None = None,
        cache: bool | None = None,
        _call_runner: RunnerSpec = None,
    ) -> None:
        if not callable(cast(object, fn)):
            msg = f"@flow needs a function, got {fn!r} of type {type(fn).__name__}; decorate a def."
            raise TypeError(msg)
        for label, spec in (("runner", runner), ("runner", _call_runner)):
            if spec is not None and not isinstance(cast(object, spec), str | Runner):
                msg = (
                    f"@flow: `{label}={spec!r}` is invalid; give a runner name such as "
                    "'concurrent', or a runner object such as ConcurrentRunner()."
                )
                raise ConfigError(msg)
        self.fn = fn
        self.name: str = name or getattr(fn, "__name__", None) or "flow"
        self.runner = runner
        #: Live progress: True, False, or None (``CONVEYOR_PROGRESS`` decides; off if unset).
        self.progress = progress
        #: Whether print() in the body, and in tasks that leave ``log_prints`` unset, is logged.
        self.log_prints = log_prints
        #: Whether each task run keeps a record of its attempts (see :mod:`conveyor.run_record`).
        self.record_runs = record_runs
        #: Where each run writes its HTML run report (see :mod:`conveyor.report`), or None.
        self.report = report
        #: Whether its tasks that leave ``cache`` unset are cached (None: as the config says).
        self.cache = cache
        self._call_runner = _call_runner
        self.is_async = is_async_callable(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Flow {self.name}>"

    @property
    def call_runner(self) -> RunnerSpec:
        """The runner given with :meth:`with_options` (it overrides everything), or None."""
        return self._call_runner

    def with_options(
        self,
        *,
        name: str | None = None,
        runner: RunnerSpec = None,
        progress: bool | None = None,
        log_prints: bool | None = None,
        record_runs: bool | None = None,
        report: ReportPath | None = None,
    ) -> Flow[P, R]:
        """
        A copy of the flow with another name, another runner for its calls, or other console
        options (``report="run.html"``: each run writes its HTML run report there). A runner
        given here takes precedence over everything else, including ``CONVEYOR_RUNNER``.
        """
        return Flow(
            self.fn,
            name=name or self.name,
            runner=self.runner,
            progress=self.progress if progress is None else progress,
            log_prints=self.log_prints if log_prints is None else log_prints,
            record_runs=self.record_runs if record_runs is None else record_runs,
            report=self.report if report is None else report,
            cache=self.cache,
            _call_runner=runner if runner is not None else self._call_runner,
        )

    def create_run(
        self,
        *,
        record_runs: bool | None = None,
        progress: bool | None = None,
        report: ReportPath | None = None,
        resume: tuple[Any, ...] | None = None,
    ) -> FlowRun:
        """
        A new, unstarted run of this flow, on the runner that resolution picks now (see
        :mod:`conveyor.config`); execute it with :meth:`FlowRun.run`, then read what happened
        in :attr:`FlowRun.record`. Calling the flow does both. Inside another flow run whose
        runner has the same configuration, the new run uses that started runner and leaves its
        lifecycle to the outer run. ``record_runs``, ``progress`` and ``report`` override the
        flow's; a report path that cannot be written raises
        :class:`~conveyor.exceptions.ConfigError` here, before anything runs. ``resume`` (the
        run's parameters) reuses the completed runs of an earlier resumable run.
        """
        from conveyor._config_files import find_config  # deferred, with config below
        from conveyor.caching.context import RunCache  # deferred: caching is for flow runs
        from conveyor.config import resolve_runner  # deferred: config imports the plugin host
        from conveyor.plugins.manager import get_host  # deferred: it loads plugins on first use

        report = self.report if report is None else report
        report_path = None
        if report is not None:
            from conveyor.report import check_report_path  # deferred: only with a report

            report_path = check_report_path(report)
        host = get_host()
        config = find_config()  # read once, for the runner and the cache settings
        runner = resolve_runner(
            call=self._call_runner, decorator=self.runner, host=host, config=config
        )
        parent = flow_run_var.get()
        shared = None
        if parent is not None:
            started = parent.info.runner
            if type(started) is type(runner) and started == runner and started.started:
                # A flow called from a flow on the same runner configuration shares its
                # started runner (its cluster) instead of starting another one.
                shared = started
        cache = RunCache.for_flow(self.name, self.cache, resume, config=config)
        if cache.on_by_default:
            cache.check()  # an unusable store is refused before the flow starts
        flow_run = FlowRun(
            self.name,
            self.fn,
            self.is_async,
            shared or runner.duplicate(),
            host,
            owns_runner=shared is None,
            record_runs=report_path is not None
            or (self.record_runs if record_runs is None else record_runs),
            log_prints=self.log_prints,
            progress=progress_wanted(self.progress if progress is None else progress),
            report=report_path,
        )
        flow_run.cache = cache
        return flow_run

    @overload
    def __call__(
        self: Flow[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        **kwargs: Any,
    ) -> Coroutine[Any, Any, State[T]]: ...

    @overload
    def __call__(
        self: Flow[P, T], *args: Any, return_state: Literal[True], **kwargs: Any
    ) -> State[T]: ...

    @overload
    def __call__(self, *args: Any, return_state: Literal[False] = False, **kwargs: Any) -> R: ...

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """
        Run the flow: return the body's value (or raise if the flow run FAILED), or the final
        :class:`~conveyor.State` with ``return_state=True``; a coroutine for an async flow.
        """
        flow_run = self.create_run()
        if self.is_async:
            return _outcome_async(flow_run.run_async(args, kwargs), return_state)
        return _outcome(flow_run.run(args, kwargs), return_state)


def _outcome(state: State[Any], return_state: bool) -> Any:
    return state if return_state else state.result()


async def _outcome_async(running: Coroutine[Any, Any, State[Any]], return_state: bool) -> Any:
    return _outcome(await running, return_state)


def current_flow_run() -> FlowRunInfo | None:
    """The flow run the calling code runs in (its body, or a task run inline), or None."""
    submitter = flow_run_var.get()
    return None if submitter is None else submitter.info


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    runner: RunnerSpec = None,
    progress: bool | None = None,
    log_prints: bool = False,
    record_runs: bool = False,
    report: ReportPath | None = None,
    cache: bool | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    runner: RunnerSpec = None,
    progress: bool | None = None,
    log_prints: bool = False,
    record_runs: bool = False,
    report: ReportPath | None = None,
    cache: bool | None = None,
) -> Any:
    """
    Make a function a flow; use as ``@flow`` or ``@flow(runner="dask")``.

    ``runner`` is a runner name or a runner object; ``CONVEYOR_RUNNER``, ``conveyor run
    --runner`` and ``.with_options(runner=...)`` override it (see :mod:`conveyor.config`).
    ``progress=True`` shows live progress in a terminal or a notebook (None: as
    ``CONVEYOR_PROGRESS`` says); ``log_prints=True`` turns ``print()`` in the body, and in
    tasks that leave their own ``log_prints`` unset, into log records; ``record_runs=True``
    keeps a record of every task run's attempts in :attr:`FlowRun.record`; ``report="run.html"``
    records them and writes each run's HTML run report there (see :mod:`conveyor.report`).
    keeps a record of every task run's attempts in :attr:`FlowRun.record`; ``cache`` is the
    default of its tasks' ``cache`` option (README "Caching and resume").
    """
    options: dict[str, Any] = {
        "name": name,
        "runner": runner,
        "progress": progress,
        "log_prints": log_prints,
        "record_runs": record_runs,
        "report": report,
        "cache": cache,
    }
    if fn is None:
        return lambda f: Flow(f, **options)
    return Flow(fn, **options)
