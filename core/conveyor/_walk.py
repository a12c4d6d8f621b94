"""
The one walker of nested arguments: find or replace the values of one kind inside lists,
tuples (named ones too), sets and dicts, down to :data:`MAX_DEPTH` levels.

>>> find([1, (2, "x"), {"k": 3}], int)
[1, 2, 3]
>>> replace({"a": [1, 2], "b": "s"}, int, lambda n: n * 10)
{'a': [10, 20], 'b': 's'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CONTAINERS", "MAX_DEPTH", "find", "replace"]

T = TypeVar("T")

CONTAINERS = (list, tuple, set, frozenset, dict)
# Deeper values are passed as they are: arguments nest a few levels, not eight.
MAX_DEPTH = 8


def _items(obj: Any) -> Any:
    return obj.values() if isinstance(obj, dict) else obj


def find(obj: Any, kind: type[T] | tuple[type, ...], found: list[T] | None = None) -> list[T]:
    """Every value of ``kind`` in ``obj`` (``obj`` itself, or inside its containers), in order."""
    out: list[Any] = [] if found is None else found
    _find(obj, kind, out, 0)
    return out


def _find(obj: Any, kind: Any, out: list[Any], depth: int) -> None:
    if isinstance(obj, kind):
        out.append(obj)
    elif depth < MAX_DEPTH and isinstance(obj, CONTAINERS):
        for item in _items(obj):
            if isinstance(item, kind) or isinstance(item, CONTAINERS):
                _find(item, kind, out, depth + 1)


def replace(obj: Any, kind: type | tuple[type, ...], swap: Callable[[Any], Any]) -> Any:
    """
    ``obj`` with each value of ``kind`` replaced by ``swap(value)``. A container that holds none
    is returned as it is, not copied; one that does is rebuilt as its own type (a dict subclass
    becomes a dict).
    """
    return _replace(obj, kind, swap, 0)


def _replace(obj: Any, kind: Any, swap: Callable[[Any], Any], depth: int) -> Any:
    if isinstance(obj, kind):
        return swap(obj)
    if depth >= MAX_DEPTH or not isinstance(obj, CONTAINERS):
        return obj
    if not any(isinstance(v, kind) or isinstance(v, CONTAINERS) for v in _items(obj)):
        return obj
    if isinstance(obj, dict):
        return {k: _replace(v, kind, swap, depth + 1) for k, v in obj.items()}
    items = [_replace(v, kind, swap, depth + 1) for v in obj]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*items)
    return type(obj)(items)
