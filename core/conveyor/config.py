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
import os
import re
import sys
import types
import typing
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from conveyor._trust import check_trusted
from conveyor.exceptions import ConfigError, UnknownRunnerError
from conveyor.runners import Runner
from conveyor.validators import matches_type, type_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from conveyor.plugins.manager import PluginHost

__all__ = [
    "DEFAULT_RUNNER",
    "FIRST_PARTY",
    "FileConfig",
    "build_runner",
    "cli_overrides",
    "find_config",
    "resolve_runner",
]

DEFAULT_RUNNER = "concurrent"
RUNNER_ENV = "CONVEYOR_RUNNER"
OPTIONS_ENV = "CONVEYOR_RUNNER_OPTIONS"

# First-party runners that live in their own distributions, and the extra that installs them.
FIRST_PARTY = {"dask": "conveyor[dask]", "ray": "conveyor[ray]"}


@attrs.frozen
class FileConfig:
    """What a config file says: its path, the runner it names, and options per runner."""

    path: Path | None = None
    runner: str | None = None
    runners: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)


def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"Config file {path} could not be read: {exc.strerror}."
        raise ConfigError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = (
            f"Config file {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
            "save it as UTF-8, as TOML requires."
        )
        raise ConfigError(msg) from exc
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:
            found = re.search(r"line (\d+)", str(exc))
            line = int(found.group(1)) if found else "?"
        msg = f"Config file {path} is not valid TOML at line {line}: {exc}; fix that line."
        raise ConfigError(msg) from exc


def _section(path: Path, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        msg = f"Config file {path}: `{where}` must be a table, got {data!r}."
        raise ConfigError(msg)
    return data


def _from_table(path: Path, table: dict[str, Any], prefix: str) -> FileConfig:
    runner = table.get("runner")
    if runner is not None and not isinstance(runner, str):
        msg = f"Config file {path}: `{prefix}runner` must be a runner name (a string), got {runner!r}."
        raise ConfigError(msg)
    runners = _section(path, table.get("runners", {}), f"{prefix}runners")
    for name, opts in runners.items():
        _section(path, opts, f"{prefix}runners.{name}")
    return FileConfig(path, runner, runners)


def find_config(start: Path | None = None) -> FileConfig:
    """
    The nearest config at or above ``start`` (default: the working directory): a
    ``conveyor.toml``, or a ``pyproject.toml`` with a ``[tool.conveyor]`` table. A file that
    belongs to another user, or that anyone may write, is refused unless its folder is listed
    as safe (see :mod:`conveyor._trust`).
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "conveyor.toml"
        if candidate.is_file():
            check_trusted(candidate)
            return _from_table(candidate, _parse(candidate), "")
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            data = _parse(candidate)
            tool = data.get("tool", {})
            if isinstance(tool, dict) and "conveyor" in tool:
                check_trusted(candidate)
                table = _section(candidate, tool["conveyor"], "tool.conveyor")
                return _from_table(candidate, table, "tool.conveyor.")
    return FileConfig()


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
    cli = _cli.get() or _NO_CLI
    env = os.environ.get(RUNNER_ENV) or None
    spec: str | Runner | None = None
    for candidate in (call, cli.runner, env, decorator):
        if candidate is not None:
            spec = candidate
            break
    if isinstance(spec, Runner):
        return spec
    if isinstance(spec, str):
        spec = spec.strip() or None  # `CONVEYOR_RUNNER='dask '` names the `dask` table too
    if spec is None:
        config = config if config is not None else find_config()
        spec = (config.runner or DEFAULT_RUNNER).strip()
    elif config is None:
        config = find_config()
    options: dict[str, Any] = dict(config.runners.get(spec, {}))
    options.update(_env_options())
    options.update(cli.options)
    return build_runner(spec, options, host=host, source=config.path)


def build_runner(
    name: str, options: Mapping[str, Any], *, host: PluginHost, source: Path | None = None
) -> Runner:
    """
    Look ``name`` up and construct its runner with ``options``; raise :class:`ConfigError` for
    an unknown name, an unknown option or a value of the wrong type.
    """
    name = name.strip()
    entry = host.runner(name)
    if entry is None:
        raise _unknown(name, host)
    cls = entry.runner_class
    accepted = {(f.alias or f.name): f for f in attrs.fields(cls) if f.init}
    unknown = sorted(set(options) - set(accepted))
    where = f" (from {source})" if source else ""
    if unknown:
        msg = (
            f"Runner {name!r} does not take option(s) {', '.join(map(repr, unknown))}{where}; "
            f"it takes: {', '.join(sorted(accepted)) or 'no options'}."
        )
        raise ConfigError(msg)
    hints = _hints(cls)
    for key, value in options.items():
        field = accepted[key]
        expected = hints.get(field.name)
        if expected is not None and not matches_type(value, expected):
            msg = (
                f"Runner {name!r}: option `{key}={value!r}`{where} has the wrong type; it takes "
                f"{type_name(expected)}. Options: {', '.join(sorted(accepted))}."
            )
            raise ConfigError(msg)
    try:
        return cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        msg = f"Runner {name!r} rejected its options{where}: {exc}"
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
