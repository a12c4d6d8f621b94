"""
The run options of a task, and their validation.

Options are checked once, when the task is defined (or changed with ``with_options``), with the
rules of :mod:`conveyor.validators`; an invalid one is a :class:`~conveyor.ConfigError` naming
the task, the option and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from conveyor import validators as v
from conveyor.exceptions import ConfigError

__all__ = ["OPTION_NAMES", "TaskOptions", "make_options"]

OPTION_NAMES = (
    "name",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "crash_retries",
    "resources",
    "runner_options",
    "map_window",
    "log_prints",
    "cache",
    "cache_key",
    "cache_expiration",
)


@attrs.frozen(kw_only=True)
class TaskOptions:
    """The run options of a task; made by :func:`make_options`, which validates them."""

    name: str
    retries: int = 0
    retry_delay_seconds: float = 0.0
    timeout_seconds: float | None = None
    crash_retries: int = 0
    resources: dict[str, float] = attrs.field(factory=dict, eq=False)
    runner_options: dict[str, Any] = attrs.field(factory=dict, eq=False)
    map_window: int = 1024
    #: Whether print() in the task becomes log records; None: as the flow says.
    log_prints: bool | None = None
    #: Whether completed runs are cached in the result store; None: as the flow says.
    cache: bool | None = None
    #: A user part of the cache key: called with the run's arguments, returns a string.
    cache_key: Callable[..., str] | None = attrs.field(default=None, eq=False)
    #: How long a cached result stays valid, in seconds (None: until cleared).
    cache_expiration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The options as keyword arguments of ``@task``."""
        return {name: getattr(self, name) for name in OPTION_NAMES}


_COUNT = v.whole_number(minimum=0)
_DELAY = v.seconds(allow_zero=True)
_TIMEOUT = v.seconds(allow_none=True)
_TABLE = v.mapping(what="a dict with string keys", allow_none=True)
_AMOUNT = v.Check(
    lambda n: (
        isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) and n >= 0
    ),
    "give a finite number of 0 or more",
)


def make_options(owner: str, fn: Callable[..., Any], **given: Any) -> TaskOptions:
    """
    Validate the ``@task`` options in ``given`` (unknown names are the caller's to refuse) and
    return them; raise :class:`~conveyor.ConfigError` naming the bad one, with ``owner`` (such
    as ``task 'fetch'``) at the front of the message.
    """
    name = given.get("name") or getattr(fn, "__name__", None) or type(fn).__name__
    if not isinstance(name, str):
        msg = f"{owner}: `name={name!r}` is invalid; give a string."
        raise ConfigError(msg)
    for option in ("retries", "crash_retries", "map_window"):
        if option in given:
            _COUNT.check(given[option], option=option, owner=owner)
    if "retry_delay_seconds" in given:
        _DELAY.check(given["retry_delay_seconds"], option="retry_delay_seconds", owner=owner)
    _TIMEOUT.check(given.get("timeout_seconds"), option="timeout_seconds", owner=owner)
    for option in ("resources", "runner_options"):
        _TABLE.check(given.get(option), option=option, owner=owner)
    resources: Mapping[str, Any] = given.get("resources") or {}
    for key, amount in resources.items():
        if not _AMOUNT.test(amount):
            msg = f"{owner}: resource {key!r}={amount!r} is invalid; {_AMOUNT.fix}."
            raise ConfigError(msg)
    log_prints = given.get("log_prints")
    if log_prints is not None and not isinstance(log_prints, bool):
        msg = f"{owner}: `log_prints={log_prints!r}` is invalid; give True, False or None."
        raise ConfigError(msg)
    cache = given.get("cache")
    if cache is not None and not isinstance(cache, bool):
        msg = f"{owner}: `cache={cache!r}` is invalid; give True, False or None."
        raise ConfigError(msg)
    cache_key = given.get("cache_key")
    if cache_key is not None and not callable(cache_key):
        msg = (
            f"{owner}: `cache_key={cache_key!r}` is invalid; give a function that returns a string."
        )
        raise ConfigError(msg)
    _TIMEOUT.check(given.get("cache_expiration"), option="cache_expiration", owner=owner)
    expiration = given.get("cache_expiration")
    timeout = given.get("timeout_seconds")
    return TaskOptions(
        name=name,
        retries=given.get("retries", 0),
        retry_delay_seconds=float(given.get("retry_delay_seconds", 0)),
        timeout_seconds=None if timeout is None else float(timeout),
        crash_retries=given.get("crash_retries", 0),
        resources=dict(resources),
        runner_options=dict(given.get("runner_options") or {}),
        map_window=given.get("map_window", 1024) or 1,
        log_prints=log_prints,
        cache=cache,
        cache_key=cache_key,
        cache_expiration=None if expiration is None else float(expiration),
    )
