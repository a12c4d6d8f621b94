"""
Cache keys: a stable hash of a task's identity and of a run's arguments.

The hash is the same in every process and on every machine (it never uses :func:`hash`):
primitives, ``str``/``bytes``, lists and tuples (in order), dicts and sets (sorted by their
items' hashes), NumPy arrays (dtype, shape and bytes), dataclasses and attrs instances (their
class and fields), and anything else by its pickled bytes (cloudpickle if installed). A value
that cannot be hashed raises :class:`Unhashable`; the engine then runs the task uncached.

>>> argument_digest((1, "a"), {"x": [1.5, None]}) == argument_digest((1, "a"), {"x": [1.5, None]})
True
>>> argument_digest((1,), {}) == argument_digest((True,), {})
False
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import struct
import sys
import types
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Unhashable", "argument_digest", "function_digest", "value_digest"]

#: Containers nested deeper than this are not hashed (a cycle or a pathological value).
MAX_DEPTH = 64


class Unhashable(Exception):
    """A value that the key rules cannot hash (so the run goes uncached)."""


class _Hasher:
    __slots__ = ("h", "stand_in")

    def __init__(self, stand_in: Callable[[Any], str | None] | None) -> None:
        self.h = hashlib.blake2b(digest_size=20)
        self.stand_in = stand_in

    def tag(self, tag: bytes, payload: bytes = b"") -> None:
        self.h.update(tag)
        self.h.update(struct.pack("<Q", len(payload)))
        self.h.update(payload)

    def add(self, value: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            msg = f"a value nested deeper than {MAX_DEPTH} levels"
            raise Unhashable(msg)
        kind = type(value)
        if value is None or kind is bool:
            self.tag(b"c", repr(value).encode())
        elif kind is int:
            self.tag(b"i", str(value).encode())
        elif kind is float:
            self.tag(b"f", struct.pack("<d", value))
        elif kind is complex:
            self.tag(b"j", struct.pack("<dd", value.real, value.imag))
        elif kind is str:
            self.tag(b"s", value.encode("utf-8", "surrogatepass"))
        elif kind in (bytes, bytearray, memoryview):
            self.tag(b"b", bytes(value))
        elif kind in (list, tuple):
            self.tag(b"l" if kind is list else b"t", str(len(value)).encode())
            for item in value:
                self.add(item, depth + 1)
        elif kind is dict:
            pairs = sorted((self._sub(k, depth), self._sub(v, depth)) for k, v in value.items())
            self.tag(b"d", b"".join(k + v for k, v in pairs))
        elif kind in (set, frozenset):
            self.tag(b"e", b"".join(sorted(self._sub(item, depth) for item in value)))
        else:
            self._other(value, depth)

    def _sub(self, value: Any, depth: int) -> bytes:
        sub = _Hasher(self.stand_in)
        sub.add(value, depth + 1)
        return sub.h.digest()

    def _other(self, value: Any, depth: int) -> None:
        kind = type(value)
        key = self.stand_in(value) if self.stand_in is not None else None
        if key is not None:
            self.tag(b"u", key.encode())
        elif kind.__module__.partition(".")[0] == "numpy":
            self._numpy(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            self.tag(b"D", _qualname(kind).encode())
            for field in dataclasses.fields(value):
                self.add(field.name, depth + 1)
                self.add(getattr(value, field.name), depth + 1)
        elif attrs.has(kind):
            self.tag(b"A", _qualname(kind).encode())
            for a in attrs.fields(kind):
                self.add(a.name, depth + 1)
                self.add(getattr(value, a.name), depth + 1)
        elif isinstance(value, types.FunctionType):
            self.tag(b"F", function_digest(value).encode())
        else:
            self.tag(b"p", _pickled(value))

    def _numpy(self, value: Any) -> None:
        np = sys.modules["numpy"]  # loaded already: the value's type comes from it
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                self.tag(b"p", _pickled(value))
                return
            array = np.ascontiguousarray(value)
            self.tag(b"n", f"{array.dtype.str}{array.shape}".encode())
            self.tag(b"N", array.tobytes())
        elif isinstance(value, np.generic):
            self.tag(b"g", f"{value.dtype.str}".encode() + value.tobytes())
        else:
            self.tag(b"p", _pickled(value))


def _qualname(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _pickled(value: Any) -> bytes:
    try:
        import cloudpickle  # deferred: optional, and only for values the rules do not cover

        dumps: Callable[..., bytes] = cloudpickle.dumps
    except ImportError:
        dumps = pickle.dumps
    try:
        return dumps(value, protocol=4)
    except Exception as exc:
        msg = f"a {type(value).__name__} that cannot be pickled ({type(exc).__name__}: {exc})"
        raise Unhashable(msg) from exc


def value_digest(value: Any, stand_in: Callable[[Any], str | None] | None = None) -> str:
    """
    The hex digest of ``value``; ``stand_in`` may give a string to hash instead of a value
    (an upstream future's key). Raises :class:`Unhashable`.
    """
    hasher = _Hasher(stand_in)
    try:
        hasher.add(value)
    except RecursionError as exc:
        msg = "a value that refers to itself"
        raise Unhashable(msg) from exc
    return hasher.h.hexdigest()


def argument_digest(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    stand_in: Callable[[Any], str | None] | None = None,
) -> str:
    """The digest of a call's positional and keyword arguments."""
    return value_digest((tuple(args), dict(kwargs)), stand_in)


def _code_parts(code: types.CodeType, hasher: _Hasher, depth: int) -> None:
    hasher.tag(b"C", code.co_code)
    hasher.tag(b"n", "\0".join(code.co_names).encode())
    hasher.tag(b"v", "\0".join(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_parts(const, hasher, depth + 1)
        else:
            hasher.tag(b"k", repr(const).encode())


_FUNCTION_DIGESTS: dict[Any, str] = {}


def function_digest(fn: Callable[..., Any]) -> str:
    """
    The identity of a task's function: its qualified name and its code (bytecode, constants
    recursively, names), so that an edited function gets a new digest.
    """
    code = getattr(fn, "__code__", None)
    try:
        cache_key: Any = (fn, code)
        found = _FUNCTION_DIGESTS.get(cache_key)
    except TypeError:  # an unhashable callable object
        cache_key, found = None, None
    if found is not None:
        return found
    hasher = _Hasher(None)
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    hasher.tag(b"q", f"{module}.{qualname}".encode())
    if isinstance(code, types.CodeType):
        _code_parts(code, hasher, 0)
    elif not isinstance(fn, types.BuiltinFunctionType):
        inner = getattr(type(fn).__call__, "__code__", None)
        if isinstance(inner, types.CodeType):
            _code_parts(inner, hasher, 0)
    digest = hasher.h.hexdigest()
    if cache_key is not None and len(_FUNCTION_DIGESTS) < 4096:
        _FUNCTION_DIGESTS[cache_key] = digest
    return digest
