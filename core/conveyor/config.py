"""
Choosing a runner by name, and its options, from code, the CLI, the environment and files.

Which runner a flow run uses, first match wins:

1. ``flow.with_options(runner=...)`` at the call;
2. ``conveyor run --runner NAME``;
3. the ``CONVEYOR_RUNNER`` environment variable;
4. ``@flow(runner=...)``;
5. ``runner = "..."`` under ``[tool.conveyor]`` in the nearest ``pyproject.toml``, or at the top
   level of a ``conveyor.toml`` (which wins when both are in one folder);
6. the default, ``concurrent``.

A runner **object** given in code is used as it is. A runner **name** gets its options from,
lowest first: ``[tool.conveyor.runners.<name>]`` (``[runners.<name>]`` in ``conveyor.toml``),
then ``CONVEYOR_RUNNER_OPTIONS`` (a JSON object), then ``conveyor run --option key=value``.
Every error here is a :class:`~conveyor.ConfigError` raised before any runner starts.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import logging
import os
import sys
import types
import typing
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from conveyor._config_files import FileConfig, closest, find_config
from conveyor.exceptions import ConfigError, UnknownRunnerError
from conveyor.runners import Runner
from conveyor.validators import matches_type, type_name

if TYPE_CHECKING:
    from conveyor.plugins.manager import PluginHost

__all__ = [
    "DEFAULT_RUNNER",
    "FIRST_PARTY",
    "FileConfig",
    "Resolution",
    "build_runner",
    "cli_overrides",
    "explain_runner",
    "find_config",
    "resolve_runner",
]

logger = logging.getLogger("conveyor")

DEFAULT_RUNNER = "concurrent"
RUNNER_ENV = "CONVEYOR_RUNNER"
OPTIONS_ENV = "CONVEYOR_RUNNER_OPTIONS"

# First-party runners that live in their own distributions, and the extra that installs them.
FIRST_PARTY = {"dask": "conveyor[dask]", "ray": "conveyor[ray]"}


# -- CLI overrides ---------------------------------------------------------------------------


@attrs.frozen
class _CliOverrides:
    runner: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)


_NO_CLI = _CliOverrides()
_cli: contextvars.ContextVar[_CliOverrides | None] = contextvars.ContextVar(
    "conveyor_cli_overrides", default=None
)


@contextmanager
def cli_overrides(runner: str | None, options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Apply ``conveyor run --runner/--option`` to the flows called inside the block."""
    token = _cli.set(_CliOverrides(runner, dict(options or {})))
    try:
        yield
    finally:
        _cli.reset(token)


# -- resolution ------------------------------------------------------------------------------


def _env_options() -> dict[str, Any]:
    raw = os.environ.get(OPTIONS_ENV)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"{OPTIONS_ENV}={raw!r} is not valid JSON ({exc.msg}); give a JSON object such as '{{\"max_workers\": 4}}'."
        raise ConfigError(msg) from exc
    if not isinstance(value, dict):
        msg = f"{OPTIONS_ENV}={raw!r} is not a JSON object; give one such as '{{\"max_workers\": 4}}'."
        raise ConfigError(msg)
    return value


@attrs.frozen
class Resolution:
    """
    Which runner a flow run would use and why: its ``name`` (None for a runner object given in
    code, which is ``runner_object``), where that came from, its ``options`` and, per option,
    where it came from.
    """

    name: str | None
    source: str
    options: Mapping[str, Any]
    sources: Mapping[str, str]
    config: FileConfig
    runner_object: Runner | None = None


_warned: set[tuple[str, str]] = set()


def _check_tables(config: FileConfig, host: PluginHost) -> None:
    """Warn, once per file and table, of a runner table that names no installed runner."""
    names = host.registry.names()
    for table in config.runners:
        key = (config.describe(), table)
        if host.runner(table) is None and table not in FIRST_PARTY and key not in _warned:
            _warned.add(key)
            logger.warning(
                "Config file %s: table `%srunners.%s` names no installed runner, so nothing uses "
                "it.%s Installed runners: %s.",
                config.describe(),
                config.prefix,
                table,
                closest(table, [*names, *FIRST_PARTY]),
                ", ".join(names),
            )


def explain_runner(
    *,
    call: str | Runner | None = None,
    decorator: str | Runner | None = None,
    host: PluginHost,
    config: FileConfig | None = None,
) -> Resolution:
    """
    Which runner resolution picks, by the precedence in this module's docstring, and where it
    and each of its options came from; raises :class:`ConfigError` for a bad config file or
    ``CONVEYOR_RUNNER_OPTIONS``.
    """
    cli = _cli.get() or _NO_CLI
    env = os.environ.get(RUNNER_ENV) or None
    spec: str | Runner | None = None
    source = "the default"
    for candidate, origin in (
        (call, "flow.with_options(runner=...)"),
        (cli.runner, "--runner"),
        (env, RUNNER_ENV),
        (decorator, "@flow(runner=...)"),
    ):
        if candidate is not None:
            spec, source = candidate, origin
            break
    if isinstance(spec, Runner):  # used as it is: no config file is read
        return Resolution(None, source, spec.options(), {}, config or FileConfig(), spec)
    config = config if config is not None else find_config()
    _check_tables(config, host)
    if isinstance(spec, str):
        spec = spec.strip() or None  # `CONVEYOR_RUNNER='dask '` names the `dask` table too
    if spec is None:
        spec = (config.runner or DEFAULT_RUNNER).strip()
        if config.runner:
            source = f"{config.path} [{config.prefix}runner]"
    table = config.runners.get(spec, {})
    options: dict[str, Any] = dict(table)
    sources = dict.fromkeys(table, f"{config.path} [{config.prefix}runners.{spec}]")
    env_options = _env_options()
    options.update(env_options)
    sources.update(dict.fromkeys(env_options, OPTIONS_ENV))
    options.update(cli.options)
    sources.update(dict.fromkeys(cli.options, "--option"))
    return Resolution(spec, source, options, sources, config)


def resolve_runner(
    *,
    call: str | Runner | None = None,
    decorator: str | Runner | None = None,
    host: PluginHost,
    config: FileConfig | None = None,
) -> Runner:
    """
    The (unstarted) runner a flow run uses, by the precedence in this module's docstring.
    """
    found = explain_runner(call=call, decorator=decorator, host=host, config=config)
    if found.runner_object is not None:
        return found.runner_object
    assert found.name is not None
    return build_runner(found.name, found.options, host=host, sources=found.sources)


def build_runner(
    name: str,
    options: Mapping[str, Any],
    *,
    host: PluginHost,
    source: Path | None = None,
    sources: Mapping[str, str] | None = None,
) -> Runner:
    """
    Look ``name`` up and construct its runner with ``options``; raise :class:`ConfigError` for
    an unknown name, an unknown option or a value of the wrong type, naming where the option
    came from (``sources``, per option, or ``source`` for all).
    """
    name = name.strip()
    entry = host.runner(name)
    if entry is None:
        raise _unknown(name, host)
    cls = entry.runner_class
    accepted = {(f.alias or f.name): f for f in attrs.fields(cls) if f.init}

    def where(key: str) -> str:
        origin = (sources or {}).get(key) or source
        return f" (from {origin})" if origin else ""

    unknown = sorted(set(options) - set(accepted))
    if unknown:
        msg = (
            f"Runner {name!r} does not take option(s) {', '.join(map(repr, unknown))}"
            f"{where(unknown[0])}; it takes: {', '.join(sorted(accepted)) or 'no options'}."
            f"{closest(unknown[0], list(accepted))}"
        )
        raise ConfigError(msg)
    hints = _hints(cls)
    for key, value in options.items():
        field = accepted[key]
        expected = hints.get(field.name)
        if expected is not None and not matches_type(value, expected):
            msg = (
                f"Runner {name!r}: option `{key}={value!r}` has the wrong type; it takes "
                f"{type_name(expected)}{where(key)}. Options: {', '.join(sorted(accepted))}."
            )
            raise ConfigError(msg)
    try:
        return cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}{where(k)}" for k in options) or "none"
        msg = f"Runner {name!r} rejected its options ({given}): {exc}"
        raise ConfigError(msg) from exc


def _unknown(name: str, host: PluginHost) -> ConfigError:
    names = host.registry.names()
    if name in FIRST_PARTY:
        broken = [p for p in host.problems() if p.plugin == name]
        if broken:
            p = broken[0]
            return UnknownRunnerError(
                f"Runner {name!r} is installed ({p.distribution} {p.version}) but its plugin is "
                f"{p.status}: {p.error}."
            )
        return UnknownRunnerError(
            f'Runner {name!r} is not installed; install it with `pip install "{FIRST_PARTY[name]}"`. '
            f"Available runners: {', '.join(names)}."
        )
    close = difflib.get_close_matches(name, [*names, *FIRST_PARTY], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownRunnerError(
        f"There is no runner named {name!r}.{hint} Available runners: {', '.join(names)}."
    )


_HINTS: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()


def _hints(cls: type[Runner]) -> dict[str, Any]:
    """
    The resolved types of the runner's init fields, by field name (resolved once per class).
    A field whose annotation cannot be resolved at run time (it names something imported only
    for type checking) is left out: its option gets no type check here, only the runner's own
    validation.
    """
    hints = _HINTS.get(cls)
    if hints is None:
        hints = {}
        for field in attrs.fields(cls):
            if field.init:
                hint = _resolve(cls, field.name, field.type)
                if hint is not None:
                    hints[field.name] = hint
        _HINTS[cls] = hints
    return hints


def _resolve(cls: type, name: str, declared: Any) -> Any:
    """The annotation of ``name`` where ``cls`` or its nearest base declares it, resolved."""
    for owner in cls.__mro__:
        annotations = vars(owner).get("__annotations__", {})
        if name in annotations:
            module = sys.modules.get(owner.__module__)
            holder = types.SimpleNamespace(__annotations__={name: annotations[name]})
            try:
                hints = typing.get_type_hints(
                    holder, globalns=vars(module) if module else {}, localns=dict(vars(owner))
                )
            except Exception:  # NameError for a type-checking-only name, or a bad annotation
                return None
            return hints[name]
    return None if isinstance(declared, str) else declared
