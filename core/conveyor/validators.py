"""
attrs validators for runner and task options, in conveyor's message style.

Every validator raises :class:`~conveyor.ConfigError` with one sentence naming the owner, the
option and the bad value, then what to give instead::

    DaskRunner: `connect_timeout=0` is invalid; give a number of seconds above 0.

The owner is the class of the instance being validated (``DaskRunner``); options that are not
validated on an attrs instance (a task's, say) pass it as ``owner=``. Runner authors use them
like any attrs validator:

>>> import attrs
>>> from conveyor import validators as v
>>> @attrs.define(kw_only=True)
... class MyRunner:
...     max_workers: int = attrs.field(default=2, validator=v.whole_number(minimum=1))
>>> MyRunner(max_workers=0)
Traceback (most recent call last):
...
conveyor.exceptions.ConfigError: MyRunner: `max_workers=0` is invalid; give a whole number of 1 or more.

:func:`matches_type` is the one shallow type check of option values that come from files, the
environment and the command line (:mod:`conveyor.config` uses it for options without a
validator of their own).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.exceptions import ConfigError

__all__ = [
    "Check",
    "Validator",
    "address",
    "dotted_name_or_class",
    "invalid",
    "mapping",
    "matches_type",
    "resolve_name",
    "seconds",
    "type_name",
    "whole_number",
]

Validator = Callable[[Any, Any, Any], None]


def invalid(owner: str, option: str, value: Any, fix: str) -> ConfigError:
    """The house error for a bad option: ``Owner: `option=value` is invalid; {fix}.``"""
    return ConfigError(f"{owner}: `{option}={value!r}` is invalid; {fix}.")


class Check:
    """
    One rule for an option value: an attrs validator (``Check(inst, attribute, value)``), and
    :meth:`check` for values that are not attrs fields (a task's options).
    """

    __slots__ = ("fix", "owner", "test")

    def __init__(self, test: Callable[[Any], bool], fix: str, owner: str | None = None) -> None:
        self.test = test
        self.fix = fix
        self.owner = owner

    def __repr__(self) -> str:
        return f"<Check: {self.fix}>"

    def __call__(self, inst: Any, attr: Any, value: Any) -> None:
        self.check(value, option=attr.name, owner=self.owner or type(inst).__name__)

    def check(self, value: Any, *, option: str, owner: str) -> None:
        """Raise the house :class:`~conveyor.ConfigError` unless ``value`` passes."""
        if not self.test(value):
            raise invalid(owner, option, value, self.fix)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole_number(*, minimum: int = 0, hint: str = "", owner: str | None = None) -> Check:
    """An ``int`` (not a bool) of at least ``minimum``; ``hint`` follows the fix in brackets."""
    extra = f" ({hint})" if hint else ""
    return Check(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
        f"give a whole number of {minimum} or more{extra}",
        owner,
    )


def seconds(
    *, allow_zero: bool = False, allow_none: bool = False, owner: str | None = None
) -> Check:
    """
    A finite number of seconds, above 0 (or 0 too with ``allow_zero``), or None with
    ``allow_none``.
    """
    if allow_zero:
        bound = "0 or more"
    else:
        bound = "above 0, or None for no limit" if allow_none else "above 0"

    def test(value: Any) -> bool:
        if value is None:
            return allow_none
        return (
            _is_number(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        )

    return Check(test, f"give a number of seconds {bound}", owner)


def mapping(
    *,
    what: str = "a table of option names to values",
    allow_none: bool = False,
    owner: str | None = None,
) -> Check:
    """A mapping with string keys (or None with ``allow_none``)."""

    def test(value: Any) -> bool:
        if value is None:
            return allow_none
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)

    return Check(test, f"give {what}", owner)


def address(
    *,
    example: str | tuple[str, ...],
    allow_none: bool = True,
    none_means: str = "",
    owner: str | None = None,
) -> Check:
    """
    A non-blank address string (or None with ``allow_none``). ``example`` shows one (or a
    tuple of them, joined with "or"); ``none_means`` says what None does.
    """

    def test(value: Any) -> bool:
        if value is None:
            return allow_none
        return isinstance(value, str) and bool(value.strip())

    examples = (example,) if isinstance(example, str) else example
    fix = "give an address such as " + " or ".join(repr(e) for e in examples)
    if allow_none:
        fix += f", or None {none_means}" if none_means else ", or None"
    return Check(test, fix, owner)


def dotted_name_or_class(*, example: str, owner: str | None = None) -> Check:
    """A class, its dotted name (``'package.module.Name'``), or None."""

    def test(value: Any) -> bool:
        if value is None or isinstance(value, type):
            return True
        return isinstance(value, str) and "." in value.strip(". :")

    return Check(test, f"give a class or its dotted name, such as {example}", owner)


def resolve_name(
    dotted: str, *, owner: str, option: str, accept: Callable[[Any], bool], what: str
) -> Any:
    """
    The object a dotted name (``package.module.Name`` or ``package.module:Name``) names, if
    ``accept(obj)`` says it is ``what`` it should be; else :class:`~conveyor.ConfigError`.
    Only the named module is imported, and nothing is called: an option that names code can
    never run something else than what it claims.

    >>> resolve_name("collections.OrderedDict", owner="R", option="cls",
    ...              accept=lambda o: isinstance(o, type), what="a class").__name__
    'OrderedDict'
    >>> resolve_name("os.getcwd", owner="R", option="cls",
    ...              accept=lambda o: isinstance(o, type), what="a class")
    Traceback (most recent call last):
    ...
    conveyor.exceptions.ConfigError: R: `cls='os.getcwd'` is invalid; give a class (it names a builtin_function_or_method).
    """
    import importlib  # deferred: only options that name code need it

    module_name, sep, attribute = dotted.strip().replace(":", ".").rpartition(".")
    if not sep or not module_name or not attribute:
        raise invalid(
            owner, option, dotted, f"give {what} as a dotted name such as 'package.module.Name'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise invalid(
            owner, option, dotted, f"give {what}; module {module_name!r} cannot be imported ({exc})"
        ) from exc
    obj = getattr(module, attribute, _MISSING)
    if obj is _MISSING:
        raise invalid(owner, option, dotted, f"give {what}; {module_name!r} has no {attribute!r}")
    if not accept(obj):
        raise invalid(owner, option, dotted, f"give {what} (it names a {type(obj).__name__})")
    return obj


_MISSING = object()


def matches_type(value: Any, expected: Any) -> bool:
    """
    Whether ``value`` fits the annotation ``expected``, shallowly: unions, ``None``, numbers
    (a bool is not a number), mappings and sequences (a list and a tuple are alike).

    >>> matches_type(3, float), matches_type(True, int), matches_type([1], tuple[int, ...])
    (True, False, True)
    """
    if expected is Any:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if origin is not None:
        expected = origin
    if not isinstance(expected, type):
        return True
    if expected is float:
        return _is_number(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (dict, Mapping):
        return isinstance(value, Mapping)
    if expected is tuple or expected is list:
        return isinstance(value, list | tuple)
    try:
        return isinstance(value, expected)
    except TypeError:
        return True


def type_name(expected: Any) -> str:
    """A short readable name of an annotation: ``float``, ``str | None``."""
    if isinstance(expected, type):
        return expected.__name__
    return str(expected).replace("typing.", "")
