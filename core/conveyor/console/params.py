"""
Flow parameters from the command line (``conveyor run ... -p NAME=VALUE``), bound to the flow's
signature and coerced to its annotations before any runner starts.

A value is coerced by the parameter's annotation: ``str`` takes the text as it is (a JSON
string, in double quotes, is decoded); ``int``, ``float``, ``bool`` (``true``/``false``,
``yes``/``no``, ``1``/``0``), ``pathlib.Path``, enums (by name or value) and ``Literal`` choices
parse the text; lists, tuples and sets take a JSON array or comma-separated items; dicts take a
JSON object; ``Optional[X]`` also takes ``null`` or ``none``; unions try each member. Without an
annotation a value is JSON if it parses, else the text.
"""

from __future__ import annotations

import enum
import inspect
import json
import pathlib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.exceptions import ConfigError
from conveyor.validators import type_name

__all__ = ["bind_params", "coerce", "describe_parameters", "signature_text"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class _Misfit(Exception):
    """A value does not fit an annotation; the message says what would."""


def signature_text(name: str, fn: Callable[..., Any]) -> str:
    """``name(x: int = 1, ys: list[int] = [1, 2])``, for messages."""
    try:
        return f"{name}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return f"{name}(...)"


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation naming what only a type checker imports: no coercion
        return {}


def describe_parameters(name: str, fn: Callable[..., Any]) -> list[tuple[str, str, str]]:
    """The flow's parameters as ``(name, type, default)`` rows; default ``required`` if none."""
    hints = _hints(fn)
    rows = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name, p.annotation)
        kind = "any" if hint is inspect.Parameter.empty else type_name(hint)
        default = "required" if p.default is p.empty else f"default {p.default!r}"
        rows.append((p.name, kind, default))
    return rows


def bind_params(
    flow_name: str, fn: Callable[..., Any], pairs: Sequence[str]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """
    Parse ``NAME=VALUE`` items for ``fn`` and return ``(args, kwargs)`` to call it with.
    Raises :class:`~conveyor.ConfigError` for an item that is not ``NAME=VALUE``, a name given
    twice, an unknown or missing parameter (with the signature), or a value that does not fit.
    """
    sig = inspect.signature(fn)
    shown = signature_text(flow_name, fn)
    given: dict[str, str] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            msg = f"Parameter {item!r} is not NAME=VALUE; write it like -p n=3 (flow {shown})."
            raise ConfigError(msg)
        if key in given:
            msg = f"Parameter {key!r} is given twice; give it once (flow {shown})."
            raise ConfigError(msg)
        given[key] = raw
    params = sig.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    unknown = [k for k in given if k not in named and not takes_any]
    if unknown:
        msg = (
            f"Flow {flow_name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"its signature is {shown}."
        )
        raise ConfigError(msg)
    missing = [
        n for n, p in params.items() if n in named and p.default is p.empty and n not in given
    ]
    if missing:
        flags = " ".join(f"-p {n}=..." for n in missing)
        msg = f"Flow {flow_name!r} needs parameter(s) {', '.join(missing)}; give {flags} (signature {shown})."
        raise ConfigError(msg)
    hints = _hints(fn)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for key, raw in given.items():
        p = params.get(key)
        hint = hints.get(key, Any) if p is not None else Any
        try:
            value = coerce(raw, hint)
        except _Misfit as exc:
            msg = f"Parameter `{key}={raw}` of flow {flow_name!r} does not fit `{type_name(hint)}`: {exc}."
            raise ConfigError(msg) from None
        if p is not None and p.kind is p.POSITIONAL_ONLY:
            args.append((list(params).index(key), value))
        else:
            kwargs[key] = value
    positional = tuple(v for _, v in sorted(args))
    return positional, kwargs


def coerce(raw: str, hint: Any) -> Any:
    """``raw`` as a value of ``hint``; raises :class:`_Misfit` saying what would fit."""
    if hint is Any or hint is inspect.Parameter.empty:
        return _json_or_text(raw)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (
        hasattr(types, "UnionType") and isinstance(hint, types.UnionType)
    ):
        return _union(raw, args)
    if origin is typing.Literal:
        for choice in args:
            if raw == str(choice) or _json_or_text(raw) == choice:
                return choice
        raise _Misfit(f"give one of {', '.join(repr(c) for c in args)}")
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        return _sequence(raw, origin or hint, args)
    if origin is dict or hint is dict:
        return _mapping(raw, args)
    if isinstance(hint, type):
        return _scalar(raw, hint)
    return _json_or_text(raw)


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _union(raw: str, members: tuple[Any, ...]) -> Any:
    if type(None) in members and raw.strip().lower() in {"null", "none", ""}:
        return None
    fits = []
    for member in members:
        if member is type(None):
            continue
        try:
            return coerce(raw, member)
        except _Misfit as exc:
            fits.append(str(exc))
    raise _Misfit("; or ".join(fits) or "give null")


def _scalar(raw: str, kind: Any) -> Any:
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise _Misfit("give true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise _Misfit("give a whole number such as 3") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise _Misfit("give a number such as 2.5") from None
    if kind is str:
        if text.startswith('"') and text.endswith('"') and len(text) > 1:
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                return raw
            if isinstance(decoded, str):
                return decoded
        return raw
    if issubclass(kind, enum.Enum):
        for member in kind:
            if text in (member.name, str(member.value)):
                return member
        raise _Misfit(f"give one of {', '.join(m.name for m in kind)}")
    if issubclass(kind, pathlib.PurePath):
        return kind(raw)
    value = _json_or_text(raw)
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except Exception:
        raise _Misfit(f"give a value that {kind.__name__}() accepts") from None


def _items(raw: str) -> list[Any] | None:
    text = raw.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise _Misfit('give a JSON array such as ["a", "b"], or a, b') from None
        return value if isinstance(value, list) else None
    return [part.strip() for part in text.split(",")] if text else []


def _sequence(raw: str, kind: Any, args: tuple[Any, ...]) -> Any:
    items = _items(raw)
    if items is None:
        raise _Misfit('give a JSON array such as ["a", "b"], or a, b')
    if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise _Misfit(f"give {len(args)} items")
        return tuple(_item(v, a) for v, a in zip(items, args, strict=True))
    inner = args[0] if args else Any
    values = [_item(v, inner) for v in items]
    return kind(values) if kind is not list else values


def _item(value: Any, hint: Any) -> Any:
    """An item of a list or dict: JSON values are checked, text items are coerced."""
    if isinstance(value, str):
        return coerce(value, hint) if hint is not Any else value
    if hint is Any or (isinstance(hint, type) and isinstance(value, hint)):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return coerce(json.dumps(value), hint)


def _mapping(raw: str, args: tuple[Any, ...]) -> dict[Any, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise _Misfit('give a JSON object such as {"a": 1}')
    key_hint, value_hint = args if len(args) == 2 else (Any, Any)
    return {_item(k, key_hint): _item(v, value_hint) for k, v in value.items()}
