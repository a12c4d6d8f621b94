"""
The rules of the ``processes`` runner's options: defaults, validators and parsers.

Kept light (no multiprocessing): the runner class is imported whenever conveyor lists its
runners.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Callable
from typing import Any

from conveyor import validators

__all__ = [
    "START_METHODS",
    "check_initializer",
    "check_memory_limit",
    "check_start_method",
    "default_max_workers",
    "default_start_method",
    "memory_limit_bytes",
    "resolve_initializer",
    "to_tuple",
]

START_METHODS = ("forkserver", "spawn")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$"  # compiled on first use, by re's cache


def default_max_workers() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return os.cpu_count() or 1


def default_start_method() -> str:
    """``forkserver`` on Linux, ``spawn`` elsewhere."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def check_start_method(inst: Any, attribute: Any, value: Any) -> None:
    """An attrs validator: ``forkserver`` (POSIX only) or ``spawn``; ``fork`` is refused."""
    owner, option = type(inst).__name__, attribute.name
    if value == "fork":
        fix = (
            "fork copies the driver with the threads it runs (conveyor's dispatcher and "
            "timers, your own) and the locks they hold, so a worker can hang for ever; give "
            "'forkserver' or 'spawn'"
        )
        raise validators.invalid(owner, option, value, fix)
    if value == "forkserver" and os.name != "posix":
        raise validators.invalid(
            owner, option, value, "this platform has no forkserver; give 'spawn'"
        )
    if value not in START_METHODS:
        raise validators.invalid(
            owner,
            option,
            value,
            f"give 'forkserver' or 'spawn' (the default is {default_start_method()!r})",
        )


def memory_limit_bytes(value: int | str | None) -> int | None:
    """
    ``value`` in bytes: an int is bytes, a string is a number with a unit (``"512 MiB"``,
    ``"2GB"``, ``"800kB"``); None stays None. Raises :class:`ValueError` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (match := re.match(_SIZE, value)):
        unit = _UNITS.get(match.group(2).lower())
        if unit is None:
            raise ValueError(value)
        number = int(float(match.group(1)) * unit)
    else:
        raise ValueError(value)
    if number <= 0:
        raise ValueError(value)
    return number


def check_memory_limit(inst: Any, attribute: Any, value: Any) -> None:
    """An attrs validator: a size :func:`memory_limit_bytes` reads, or None; Linux only."""
    owner, option = type(inst).__name__, attribute.name
    try:
        memory_limit_bytes(value)
    except ValueError:
        fix = "give a number of bytes or a size such as '512 MiB' or '2GB', or None for no limit"
        raise validators.invalid(owner, option, value, fix) from None
    if value is not None and not sys.platform.startswith("linux"):
        fix = "it is enforced with RLIMIT_AS, which only Linux honours; leave it unset here"
        raise validators.invalid(owner, option, value, fix)


def check_initializer(inst: Any, attribute: Any, value: Any) -> None:
    """An attrs validator: None, a callable, or its dotted name (``pkg.mod:func``)."""
    if value is None or callable(value):
        return
    if isinstance(value, str):
        module, colon, attr = value.strip().partition(":")
        if (colon and module and attr) or (not colon and "." in module.strip(".")):
            return
    fix = "give a callable or its dotted name, such as 'mypackage.setup:init_worker'"
    raise validators.invalid(type(inst).__name__, attribute.name, value, fix)


def to_tuple(value: Any) -> Any:
    """attrs converter: a list (from a config file) becomes a tuple; anything else is kept."""
    return tuple(value) if isinstance(value, list) else value


def resolve_initializer(value: Callable[..., object] | str, owner: str) -> Callable[..., object]:
    """
    The initializer ``value`` names: itself if callable, else the function its dotted name
    (``pkg.mod:func`` or ``pkg.mod.func``) names, which must be a Python function defined in
    that module (not a class, a builtin or a name the module imported from elsewhere). Only the
    named module is imported and nothing is called; else :class:`~conveyor.ConfigError`.
    """
    if callable(value):
        return value
    module_name = value.strip().replace(":", ".").rpartition(".")[0]

    def accept(obj: Any) -> bool:
        return isinstance(obj, types.FunctionType) and obj.__module__ == module_name

    found = validators.resolve_name(
        value,
        owner=owner,
        option="initializer",
        accept=accept,
        what=f"a function defined in {module_name!r}, such as 'mypackage.setup:init_worker'",
    )
    return found  # type: ignore[no-any-return]
