"""
Tasks: functions whose calls become runs that a runner executes.

>>> from conveyor import flow, task
>>> @task
... def double(x: int) -> int:
...     return 2 * x
>>> @flow(runner="sequential")
... def twice(xs: list[int]) -> list[int]:
...     return [f.result() for f in double.map(xs)]
>>> twice([1, 2, 3])
[2, 4, 6]
"""

from __future__ import annotations

import collections
import contextvars
import functools
import importlib
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from conveyor.exceptions import ConfigError, NoFlowRunError
from conveyor.futures import RunFuture
from conveyor.options import OPTION_NAMES, TaskOptions, make_options
from conveyor.runners.attempt import is_async_callable

if TYPE_CHECKING:
    from conveyor.flow_run_info import FlowRunInfo

__all__ = ["RunStream", "Task", "TaskSubmitter", "flow_run_var", "task", "unmapped"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class TaskSubmitter(Protocol):
    """What runs tasks inside a flow run (the flow run): submitting, and inline calls."""

    @property
    def info(self) -> FlowRunInfo:
        """The flow run, as a value."""
        ...

    def submit(
        self,
        task: Task[..., Any],
        options: TaskOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> RunFuture[Any]:
        """Send one run of ``task`` to the flow's runner and return its future."""
        ...

    def call_inline(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``task`` here and return its value (a coroutine in async code)."""


# The flow run whose body (or one of whose tasks) is running in this context.
flow_run_var: contextvars.ContextVar[TaskSubmitter | None] = contextvars.ContextVar(
    "conveyor_flow_run", default=None
)


class unmapped(Generic[R]):
    """
    Wrap an argument of :meth:`Task.map` that every run gets whole instead of one element of.
    """

    __slots__ = ("value",)

    def __init__(self, value: R) -> None:
        self.value = value


def _current_flow_run(task: Task[..., Any], verb: str) -> TaskSubmitter:
    flow_run = flow_run_var.get()
    if flow_run is None:
        msg = (
            f"Task {task.name!r} was {verb} outside a flow run; call `{task.name}.{verb[:-2]}()` "
            f"inside a function decorated with @flow, or call `{task.name}(...)` to run it inline."
        )
        raise NoFlowRunError(msg)
    return flow_run


class Task(Generic[P, R]):
    """
    A function that runs as task runs: inline when called inside a flow, on the flow's runner
    with :meth:`submit` and :meth:`map`. Outside a flow, calling it calls the function.

    Create one with :func:`task`.
    """

    def __init__(self, fn: Callable[P, R], **options: Any) -> None:
        if not callable(_untyped(fn)):
            msg = f"@task needs a function, got {fn!r} of type {type(fn).__name__}; decorate a def."
            raise TypeError(msg)
        unknown = set(options) - set(OPTION_NAMES)
        if unknown:
            msg = (
                f"@task got unknown option(s) {', '.join(sorted(unknown))}; "
                f"the options are {', '.join(OPTION_NAMES)}."
            )
            raise ConfigError(msg)
        self.fn = fn
        self.options = make_options(f"task {getattr(fn, '__name__', fn)!r}", fn, **options)
        self.is_async = is_async_callable(fn)
        self._printing: dict[bool, Callable[..., Any]] = {}
        functools.update_wrapper(self, fn)

    def printing_fn(self, active: bool = True) -> Callable[..., Any]:
        """
        The function wrapped so that its prints become log records (``active=False``: so that
        they stay prints inside a flow that logs prints); made once per task.
        """
        wrapped = self._printing.get(active)
        if wrapped is None:
            from conveyor._prints import wrap  # deferred: only tasks that log their prints

            wrapped = self._printing[active] = wrap(self.fn, self.is_async, self, active)
        return wrapped

    @property
    def name(self) -> str:
        """The task's name, used for its runs' names (``name-1``, ``name-2``, ...)."""
        return self.options.name

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __reduce__(self) -> Any:
        # Pickle by reference when the module attribute is this task, so remote workers import
        # it; otherwise by value (function and options).
        module, qualname = (
            getattr(self.fn, "__module__", None),
            getattr(self.fn, "__qualname__", ""),
        )
        if module and module != "__main__" and "<locals>" not in qualname:
            try:
                obj: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError):
                obj = None
            if obj is self:
                return (_import_task, (module, qualname))
        return (_rebuild_task, (self.fn, self.options.as_dict()))

    def with_options(self, **changes: Any) -> Task[P, R]:
        """
        A copy of the task with some options changed; raises :class:`ConfigError` for an
        unknown option.
        """
        unknown = set(changes) - set(OPTION_NAMES)
        if unknown:
            msg = (
                f"Task {self.name!r}.with_options() got unknown option(s) "
                f"{', '.join(sorted(unknown))}; the options are {', '.join(OPTION_NAMES)}."
            )
            raise ConfigError(msg)
        merged = self.options.as_dict()
        merged.update(changes)
        return Task(self.fn, **merged)

    # -- calling ----------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        flow_run = flow_run_var.get()
        if flow_run is None:
            return self.fn(*args, **kwargs)
        return flow_run.call_inline(self, args, kwargs)  # type: ignore[no-any-return]

    @overload
    def submit(
        self: Task[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
    ) -> RunFuture[T]: ...

    @overload
    def submit(self: Task[..., T], *args: Any, **kwargs: Any) -> RunFuture[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> RunFuture[Any]:
        """
        Send one run to the flow's runner and return its future. Futures among the arguments
        are dependencies: the run starts once they completed, and gets their values.
        Raises :class:`~conveyor.NoFlowRunError` outside a flow run.
        """
        flow_run = _current_flow_run(self, "submitted")
        return flow_run.submit(self, self.options, args, kwargs)

    @overload
    def map(
        self: Task[..., Coroutine[Any, Any, T]], first: Iterator[Any], /, *args: Any, **kwargs: Any
    ) -> RunStream[T]: ...

    @overload
    def map(
        self: Task[..., T], first: Iterator[Any], /, *args: Any, **kwargs: Any
    ) -> RunStream[T]: ...

    @overload
    def map(
        self: Task[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
    ) -> list[RunFuture[T]]: ...

    @overload
    def map(self: Task[..., T], *args: Any, **kwargs: Any) -> list[RunFuture[T]]: ...

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """
        Submit one run per element of the iterable arguments and return their futures.

        Arguments wrapped in :class:`unmapped`, strings, bytes, mappings, futures and other
        non-iterables are passed whole to every run. Sized iterables (lists, tuples, ranges)
        must have equal lengths, and map returns a list of futures; while it submits, it keeps
        at most ``map_window`` of its runs unfinished (it waits for the oldest).

        If an iterable is lazy (a generator or another iterator), map returns a
        :class:`RunStream` instead: an iterator of futures, in order, that keeps at most
        ``map_window`` runs submitted ahead of what you consumed, so a million-item map never
        holds a million futures at once. Runs are submitted as you iterate.
        """
        flow_run = _current_flow_run(self, "mapped")
        lazy = [
            v
            for v in [*args, *kwargs.values()]
            if isinstance(v, Iterator) and not isinstance(v, str | bytes | Mapping | RunFuture)
        ]
        if lazy:
            return RunStream(self, flow_run, args, kwargs)
        mapped: dict[int | str, list[Any]] = {}
        static: dict[int | str, Any] = {}
        pairs: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
        for key, value in pairs:
            if isinstance(value, unmapped):
                static[key] = value.value
            elif isinstance(value, str | bytes | Mapping | RunFuture) or not isinstance(
                value, Iterable
            ):
                static[key] = value
            else:
                mapped[key] = list(value)
        if not mapped:
            msg = (
                f"{self.name}.map() got no iterable argument; pass a list (or another "
                "iterable) to map over, or use .submit() for a single run."
            )
            raise ConfigError(msg)
        lengths = {len(v) for v in mapped.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k!r}: {len(v)}" for k, v in mapped.items())
            msg = (
                f"{self.name}.map() got iterables of different lengths ({sizes}); give them "
                "equal lengths, or wrap the ones to pass whole in unmapped()."
            )
            raise ConfigError(msg)
        futures = []
        n_pos = len(args)
        window = self.options.map_window
        for i in range(lengths.pop()):
            call_args = tuple(mapped[k][i] if k in mapped else static[k] for k in range(n_pos))
            call_kwargs = {k: (mapped[k][i] if k in mapped else static[k]) for k in kwargs}
            futures.append(flow_run.submit(self, self.options, call_args, call_kwargs))
            if i >= window:
                # Keep at most map_window runs of this map unfinished: a huge map then costs
                # memory per finished future only, and time grows linearly with its length.
                # Waiting here gives a pool slot back, like any wait on a future.
                futures[i - window].wait_unobserved()
        return futures


class RunStream(Iterator[RunFuture[R]]):
    """
    The futures of a map over a lazy iterable, yielded in order; at most ``map_window`` runs
    are submitted ahead of the consumer. Iterables are zipped: the stream ends with the
    shortest one.
    """

    def __init__(
        self,
        task: Task[..., R],
        flow_run: TaskSubmitter,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._task = task
        self._flow_run = flow_run
        self._n_pos = len(args)
        self._keys: list[int | str] = [*range(len(args)), *kwargs]
        self._sources: list[Iterator[Any] | None] = []
        self._static: list[Any] = []
        for value in [*args, *kwargs.values()]:
            if isinstance(value, unmapped):
                self._sources.append(None)
                self._static.append(value.value)
            elif isinstance(value, str | bytes | Mapping | RunFuture) or not isinstance(
                value, Iterable
            ):
                self._sources.append(None)
                self._static.append(value)
            else:
                self._sources.append(iter(value))
                self._static.append(None)
        self._window = task.options.map_window
        self._pending: collections.deque[RunFuture[R]] = collections.deque()
        self._exhausted = False
        self._fill()

    def __repr__(self) -> str:
        return f"<RunStream of {self._task.name}: {len(self._pending)} submitted ahead>"

    def _submit_next(self) -> bool:
        values = []
        for source, static in zip(self._sources, self._static, strict=True):
            if source is None:
                values.append(static)
                continue
            try:
                values.append(next(source))
            except StopIteration:
                self._exhausted = True
                return False
        args = tuple(values[: self._n_pos])
        kwargs = {
            str(k): v for k, v in zip(self._keys[self._n_pos :], values[self._n_pos :], strict=True)
        }
        self._pending.append(self._flow_run.submit(self._task, self._task.options, args, kwargs))
        return True

    def _fill(self) -> None:
        while not self._exhausted and len(self._pending) < self._window:
            if not self._submit_next():
                break

    def __next__(self) -> RunFuture[R]:
        self._fill()  # the future handed out last counts as consumed now
        if not self._pending:
            raise StopIteration
        return self._pending.popleft()


def _untyped(value: object) -> object:
    """Hide a value's static type, for runtime checks of what untyped callers pass."""
    return value


def _import_task(module: str, qualname: str) -> Task[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def _rebuild_task(fn: Callable[..., Any], options: dict[str, Any]) -> Task[..., Any]:
    return Task(fn, **options)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
    timeout_seconds: float | None = None,
    crash_retries: int = 0,
    resources: Mapping[str, float] | None = None,
    runner_options: Mapping[str, Any] | None = None,
    map_window: int = 1024,
    log_prints: bool | None = None,
    cache: bool | None = None,
    cache_key: Callable[[Any], str] | None = None,
    cache_expiration: float | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Any = None, /, **options: Any) -> Any:
    """
    Make a function a task; use as ``@task`` or ``@task(retries=2, timeout_seconds=30)``.

    Options: ``name``; ``retries`` and ``retry_delay_seconds`` (for runs whose code raised);
    ``timeout_seconds`` (the run ends FAILED, named TimedOut, on time); ``crash_retries`` (for
    runs the infrastructure failed); ``resources`` (e.g. ``{"GPU": 1}``, for runners that take
    them); ``runner_options`` (passed to the runner as is); ``map_window`` (how many runs a map over a
    lazy iterable keeps submitted ahead, default 1024); ``log_prints`` (``print()`` in the task
    becomes log records; None, the default, follows ``@flow(log_prints=...)``); ``cache``,
    ``cache_key``, ``cache_expiration`` (README "Caching and resume"). Async functions are first-class.
    """
    if fn is None:
        return lambda f: Task(f, **options)
    return Task(fn, **options)
