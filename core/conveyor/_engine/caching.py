"""
The cache step of a task run: its key, the look-up before it is submitted, and the write after
it completed.

The key is a digest of the task's identity (qualified name and code), the run's arguments (an
upstream future stands in by its run's key, so a chain is keyed before any data moves) or,
when the task has a ``cache_key``, the string it returns instead, and in ``--resume`` mode the
flow name and parameters. A run that
cannot be keyed (an unhashable argument, a ``cache_key`` that raises) runs uncached, with one
warning per task. Only COMPLETED results are written; the key is held (a file lock on a local
store) from the look-up that missed until the result is written or the run ended otherwise, so
two flows computing one key compute it once.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.futures import RunFuture
from conveyor.options import TaskOptions
from conveyor.states import Cached, ResultRef, State, StateType

if TYPE_CHECKING:
    from conveyor.caching.context import RunCache

__all__ = ["CacheableRun", "end", "look_up"]


class CacheableRun(Protocol):
    """What the cache step reads and writes on a task run."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: TaskOptions
    future: RunFuture[Any]
    cache_key: str | None
    cache_release: Callable[[], None] | None


class _NoKeyYet(Exception):
    """An upstream run has no key: key this run from its values once they are in."""


#: The key of each keyed run's future (a future drops its run once final; the key stays).
_KEYS: weakref.WeakKeyDictionary[RunFuture[Any], str] = weakref.WeakKeyDictionary()


def _stand_in(value: Any) -> str | None:
    if isinstance(value, RunFuture):
        key = _KEYS.get(value)
        if key is None:
            raise _NoKeyYet
        return f"run:{key}"
    return None


def _user_part(cache: RunCache, run: CacheableRun) -> str | None:
    user = run.options.cache_key
    if user is None:
        return ""
    name = run.options.name
    try:
        try:
            given: Any = dict(inspect.signature(run.fn).bind(*run.args, **run.kwargs).arguments)
        except (TypeError, ValueError):
            given = (run.args, run.kwargs)
        part: Any = user(given)
    except Exception as exc:
        cache.warn_once(
            name,
            "cache_key",
            f"The cache_key of task {name!r} raised {type(exc).__name__}: {exc}; its runs are "
            "not cached until it returns a string.",
        )
        return None
    if not isinstance(part, str):
        cache.warn_once(
            name,
            "cache_key",
            f"The cache_key of task {name!r} returned a {type(part).__name__}, not a string; "
            "its runs are not cached until it returns a string.",
        )
        return None
    return part


def key_of(cache: RunCache, run: CacheableRun, *, final: bool) -> str | None:
    """
    The run's key, or None when it is not cached. Before its upstream values are in
    (``final=False``), an upstream run without a key makes this raise :class:`_NoKeyYet`
    (caught by the caller, which keys the run again with ``final=True``).
    """
    from conveyor.caching.keys import Unhashable, function_digest, value_digest  # deferred: hashlib

    name = run.options.name
    user = _user_part(cache, run)
    if user is None:
        return None
    if run.options.cache_key is not None:  # the user's part stands for the arguments
        return value_digest((function_digest(run.fn), "user", user, cache.resume))
    try:
        args = value_digest((tuple(run.args), dict(run.kwargs)), _stand_in)
    except _NoKeyYet:
        if final:
            return None
        raise
    except Unhashable as exc:
        cache.warn_once(
            name,
            "unhashable",
            f"Task {name!r} got {exc} as an argument, so its runs with it are not cached; "
            "pass hashable values or give the task a `cache_key`.",
        )
        return None
    return value_digest((function_digest(run.fn), args, cache.resume))


def look_up(cache: RunCache, run: CacheableRun, *, final: bool) -> State[Any] | None:
    """
    Key the run and look it up: a ``Cached`` state on a hit (the caller finishes the run
    with it), None on a miss (the key is then held until :func:`end`) or when uncached.
    """
    if not cache.enabled_for(run.options.cache):
        return None
    try:
        key = key_of(cache, run, final=final)
    except _NoKeyYet:
        return None
    store = cache.store() if key is not None else None
    if key is None or store is None:
        return None
    run.cache_key = key
    _KEYS[run.future] = key
    name = run.options.name
    hit = _load(cache, store, key, name)
    if hit is not None:
        return hit
    try:
        release = store.acquire(key)
    except OSError as exc:
        cache.warn_once(name, "lock", f"The cache lock of task {name!r} failed ({exc}).")
        release = None
    # Another flow may have computed it while we waited for the lock.
    hit = _load(cache, store, key, name)
    if hit is not None:
        if release is not None:
            release()
        return hit
    run.cache_release = release or _nothing
    return None


def _nothing() -> None:
    pass


def _load(cache: RunCache, store: Any, key: str, name: str) -> State[Any] | None:
    from conveyor.caching.store import CorruptEntry  # deferred: only when caching is on

    try:
        found, value = store.load(key)
    except (CorruptEntry, OSError) as exc:
        cache.warn_once(
            name,
            f"corrupt:{key}",
            f"Cached result of task {name!r} is unusable: {exc}; recomputing it.",
        )
        return None
    return Cached(value, key) if found else None


def end(cache: RunCache, run: CacheableRun, state: State[Any]) -> None:
    """The run ends with ``state``: write a COMPLETED result, then release the key."""
    release, run.cache_release = run.cache_release, None
    if release is None:
        return
    try:
        key = run.cache_key
        store = cache.store()
        if key is None or store is None or state.type is not StateType.COMPLETED:
            return
        if state.name == "Cached":
            return
        name = run.options.name
        data = state.data
        try:
            # On a runner that keeps results remote, the driver fetches the value to store it.
            value = data.get() if isinstance(data, ResultRef) else data
            store.save(key, name, value, run.options.cache_expiration)
        except Exception as exc:
            cache.warn_once(
                name,
                "write",
                f"The result of task {name!r} could not be written to result store "
                f"{store.location!r} ({type(exc).__name__}: {exc}); it is not cached.",
            )
    finally:
        release()
