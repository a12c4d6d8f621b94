"""
Pickling for runners that execute tasks in other processes: the fast standard pickler where it
serves, cloudpickle (imported on first use) for what a worker could not import otherwise, and
caches so that a map of 1,000 runs pickles its function once.
"""

from __future__ import annotations

import pickle
import weakref
from typing import Any

__all__ = [
    "PLAIN_TYPES",
    "PackError",
    "cloudpickle",
    "dumps",
    "function_bytes",
    "load_function",
    "loads",
]

# Values of these types always pickle and unpickle.
PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})


class PackError(Exception):
    """The call could not be pickled; the message names the value's type."""


_pickler: Any = None  # cloudpickle, imported on first use: discovery stays light


def cloudpickle() -> Any:
    """cloudpickle, which pickles functions defined in __main__, closures and lambdas by value."""
    global _pickler
    if _pickler is None:
        try:
            import cloudpickle as module  # deferred: discovery and in-process runs never need it
        except ImportError:  # pragma: no cover - the remote runners' distributions depend on it
            msg = (
                "Running tasks in another process needs cloudpickle, which is not installed; "
                "install it with `pip install cloudpickle`."
            )
            raise PackError(msg) from None
        _pickler = module
    return _pickler


def dumps(obj: Any) -> bytes:
    """
    Pickle ``obj`` with cloudpickle, which pickles the functions behind ``@task`` (often
    defined in ``__main__``) by value. Raises :class:`PackError` if cloudpickle is missing.
    """
    # The standard pickler is several times faster; its output is used unless it refers to
    # __main__ (which a worker cannot import) or it cannot pickle the object at all.
    try:
        data: bytes = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = b"__main__"
    if b"__main__" in data:
        data = cloudpickle().dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` made."""
    return pickle.loads(data)


# Pickled functions, by function: a map of 1,000 runs pickles its function once (as Dask's
# own dumps_function does). Workers keep the last unpickled functions by their bytes.
_FN_CACHE: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_FN_LOADED: dict[bytes, Any] = {}
_FN_LOADED_MAX = 256


def function_bytes(fn: Any) -> bytes:
    """``fn`` pickled with :func:`dumps`, once per function (cached while ``fn`` lives)."""
    try:
        return _FN_CACHE[fn]
    except (KeyError, TypeError):
        pass
    blob = dumps(fn)
    try:
        _FN_CACHE[fn] = blob
    except TypeError:  # not weak-referenceable: pickle it each time
        pass
    return blob


def load_function(blob: bytes) -> Any:
    """The function :func:`function_bytes` pickled; a worker unpickles each one once."""
    fn = _FN_LOADED.get(blob)
    if fn is None:
        fn = loads(blob)
        if len(_FN_LOADED) >= _FN_LOADED_MAX:
            _FN_LOADED.clear()
        _FN_LOADED[blob] = fn
    return fn
