"""
The one driver of a flow run, for sync and async bodies alike.

:func:`_steps` yields what to do next (start the runner, run the body, wait for the task runs,
stop the runner); :func:`drive` does each step by blocking, :func:`drive_async` by awaiting,
and each sends back the result or throws in what the step raised. So both share every rule:
the cancel of the runs on an early end, the second Ctrl-C guard, a shared runner left alone,
and the final state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Protocol

from conveyor._context import log_names_var, sync_caller_var
from conveyor.run_logging import install_record_factory
from conveyor.runners.protocol import Runner
from conveyor.states import State
from conveyor.tasks import TaskSubmitter, flow_run_var

if TYPE_CHECKING:
    from conveyor.flow_run_info import FlowRunInfo
    from conveyor.plugins.manager import PluginHost

__all__ = ["DrivenRun", "drive", "drive_async"]

logger = logging.getLogger("conveyor")


class DrivenRun(TaskSubmitter, Protocol):
    """What the driver needs of a flow run (:class:`~conveyor.FlowRun` is one)."""

    name: str
    body: Callable[..., Any]
    runner: Runner
    owns_runner: bool
    host: PluginHost | None
    accepting: bool
    log_prints: bool

    @property
    def info(self) -> FlowRunInfo: ...

    def cancel_all(self, message: str) -> None: ...

    def wait_all(self) -> None: ...

    async def wait_all_async(self) -> None: ...

    def close_inline(self) -> None: ...

    def began(self) -> None: ...

    def ended(self, state: State[Any], error: BaseException | None) -> None: ...

    def final_state(self, value: Any, error: BaseException | None) -> State[Any]: ...


def drive(flow_run: DrivenRun, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State[Any]:
    """Run ``flow_run`` here, blocking, and return its final state."""
    steps = _steps(flow_run, args, kwargs)
    op: Any = next(steps)
    while True:
        try:
            result, error = _perform(flow_run, op, args, kwargs), None
        except BaseException as exc:
            result, error = None, exc
        finished, op = _advance(steps, result, error)
        if finished:
            return op  # type: ignore[no-any-return]


async def drive_async(
    flow_run: DrivenRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> State[Any]:
    """Run ``flow_run`` (an async body) on the running event loop; return its final state."""
    steps = _steps(flow_run, args, kwargs)
    op: Any = next(steps)
    while True:
        try:
            result, error = await _perform_async(flow_run, op, args, kwargs), None
        except BaseException as exc:
            result, error = None, exc
        finished, op = _advance(steps, result, error)
        if finished:
            return op  # type: ignore[no-any-return]


_START, _BODY, _WAIT, _STOP = "start", "body", "wait", "stop"


def _steps(
    flow_run: DrivenRun, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Generator[str, Any, State[Any]]:
    yield _START
    flow_run.began()
    value: Any = None
    error: BaseException | None = None
    stop_error: Exception | None = None
    try:
        if flow_run.host is not None:
            flow_run.host.flow_run_started(flow_run.info)
        tokens = _activate(flow_run)
        try:
            value = yield _BODY
            yield _WAIT
        except BaseException as exc:
            error = exc
            flow_run.cancel_all(f"Flow run {flow_run.name!r} ended early: {type(exc).__name__}.")
        finally:
            _deactivate(flow_run, tokens)
    finally:
        flow_run.close_inline()
        try:
            yield _STOP
        except KeyboardInterrupt:
            # A second Ctrl-C. Landing inside the runner's stop, it is the runner's to handle;
            # landing before that stop began, it would leave the runner (its cluster) running:
            # stop it now.
            if flow_run.runner.started:
                yield _STOP
            raise
        except Exception as exc:
            if error is None:
                stop_error = exc  # raised once the run's state is known and recorded
            else:
                # The body's error matters more than a cleanup error; keep it and log this one.
                logger.exception("Stopping runner %r failed.", flow_run.runner.name)
    state = flow_run.final_state(value, error)
    flow_run.ended(state, error)
    if flow_run.host is not None:
        flow_run.host.flow_run_finished(flow_run.info, state)
    if stop_error is not None:
        raise stop_error
    if error is not None and not isinstance(error, Exception):
        raise error  # KeyboardInterrupt, SystemExit: after cleanup, never swallowed
    return state


def _advance(
    steps: Generator[str, Any, State[Any]], result: Any, error: BaseException | None
) -> tuple[bool, Any]:
    """
    Hand a step's result (or what it raised) to the driver: (True, final state) when it is
    done, else (False, the next step).
    """
    try:
        return False, steps.send(result) if error is None else steps.throw(error)
    except StopIteration as done:
        return True, done.value


def _perform(flow_run: DrivenRun, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if op == _BODY:
        token = sync_caller_var.set(True)
        try:
            if flow_run.log_prints:
                from conveyor._prints import capturing  # deferred: only flows logging prints

                with capturing():
                    return flow_run.body(*args, **kwargs)
            return flow_run.body(*args, **kwargs)
        finally:
            sync_caller_var.reset(token)
    if op == _WAIT:
        return flow_run.wait_all()
    if not flow_run.owns_runner:
        return None  # the outer flow run starts and stops the shared runner
    if op == _START:
        return flow_run.runner.start()
    return flow_run.runner.stop()


async def _perform_async(
    flow_run: DrivenRun, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if op == _BODY:
        token = sync_caller_var.set(False)
        try:
            body: Coroutine[Any, Any, Any] = flow_run.body(*args, **kwargs)
            if flow_run.log_prints:
                from conveyor._prints import capturing  # deferred: only flows logging prints

                with capturing():
                    return await body
            return await body
        finally:
            sync_caller_var.reset(token)
    if op == _WAIT:
        return await flow_run.wait_all_async()
    if not flow_run.owns_runner:
        return None  # the outer flow run starts and stops the shared runner
    if op == _START:
        return await flow_run.runner.__aenter__()
    return await flow_run.runner.__aexit__(None, None, None)


def _activate(flow_run: DrivenRun) -> tuple[Any, Any]:
    install_record_factory()
    return flow_run_var.set(flow_run), log_names_var.set((flow_run.name, None))


def _deactivate(flow_run: DrivenRun, tokens: tuple[Any, Any]) -> None:
    flow_run.accepting = False
    flow_run_var.reset(tokens[0])
    log_names_var.reset(tokens[1])
