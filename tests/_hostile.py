"""
Hostile task bodies and values, importable by workers: exceptions whose methods misbehave,
BaseExceptions, huge messages, recursion, values that refuse to pickle or unpickle.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from conveyor import task


class StrRaises(Exception):
    """An exception whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class ReprRaises(Exception):
    """An exception whose __repr__ raises."""

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class ReduceRaises(Exception):
    """An exception that cannot be pickled: its __reduce__ raises."""

    def __reduce__(self) -> Any:
        raise RuntimeError("__reduce__ exploded")


class ReduceExits(Exception):
    """An exception whose unpickling calls sys.exit(9)."""

    def __reduce__(self) -> Any:
        return (sys.exit, (9,))


class ReduceBaseRaises(Exception):
    """An exception whose pickling raises a BaseException (SystemExit)."""

    def __reduce__(self) -> Any:
        raise SystemExit(4)


class InitNeedsTwo(Exception):
    """An exception whose __init__ takes two arguments, so the default unpickling fails."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}+{b}")


class CustomBase(BaseException):
    """A BaseException that is not an Exception."""


class DelRaises:
    """A value whose __del__ raises."""

    def __del__(self) -> None:
        raise RuntimeError("__del__ exploded")


class UnpickleBomb:
    """Pickles, but its unpickling raises."""

    def __reduce__(self) -> Any:
        return (_bomb, ())


def _bomb() -> None:
    raise RuntimeError("unpickle bomb")


def _recurse(n: int) -> int:
    return _recurse(n + 1) + 1


HUGE = 10_000_000

RAISERS: dict[str, Any] = {
    "str-raises": lambda: StrRaises("x"),
    "repr-raises": lambda: ReprRaises("x"),
    "reduce-raises": lambda: ReduceRaises("x"),
    "reduce-exits": lambda: ReduceExits("x"),
    "reduce-base-raises": lambda: ReduceBaseRaises("x"),
    "init-needs-two": lambda: InitNeedsTwo("a", "b"),
    "custom-base": lambda: CustomBase("base"),
    "keyboard-interrupt": lambda: KeyboardInterrupt(),
    "generator-exit": lambda: GeneratorExit(),
    "system-exit": lambda: SystemExit(3),
    "huge-message": lambda: ValueError("m" * HUGE),
}


@task
def raise_kind(kind: str) -> None:
    """Raise the hostile exception named ``kind``."""
    if kind == "recursion":
        _recurse(0)
    raise RAISERS[kind]()


@task
async def raise_kind_async(kind: str) -> None:
    """Raise the hostile exception named ``kind``, from an async task."""
    raise_kind.fn(kind)


RETURNERS: dict[str, Any] = {
    "lock": threading.Lock,
    "generator": lambda: (c for c in "abc"),
    "unpickle-bomb": UnpickleBomb,
    "del-raises": DelRaises,
}


@task
def return_kind(kind: str) -> Any:
    """Return the hostile value named ``kind``."""
    return RETURNERS[kind]()


@task
def ok(x: int) -> int:
    """A sibling that should complete whatever its neighbour does."""
    return x
