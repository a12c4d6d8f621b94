"""
Config files: finding the nearest ``conveyor.toml`` or ``pyproject.toml`` with a
``[tool.conveyor]`` table, parsing it, and refusing what it must not say.

A key that conveyor does not know (``runer = "dask"``) is an error naming the file, the key and
the closest valid name, as is a table that is not a table. Which runner tables name runners
that are installed is checked where the plugin host is known (:mod:`conveyor.config`).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from conveyor._trust import check_trusted
from conveyor.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["KEYS", "FileConfig", "closest", "find_config"]

#: The caching keys, read by :mod:`conveyor.caching.settings`.
CACHE_KEYS = ("result_store", "cache", "cache_max_bytes", "cache_max_age")
#: The keys of ``[tool.conveyor]`` (the top level of ``conveyor.toml``).
KEYS = ("runner", "runners", *CACHE_KEYS)


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` did you mean `x`?`` for the choice nearest ``name``, or an empty string."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean `{found[0]}`?" if found else ""


@attrs.frozen
class FileConfig:
    """What a config file says: its path, the runner it names, and options per runner."""

    path: Path | None = None
    runner: str | None = None
    runners: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: How the file spells its conveyor table: ``tool.conveyor.`` in pyproject.toml.
    prefix: str = ""
    #: The caching keys the file sets (see ``CACHE_KEYS``).
    settings: Mapping[str, Any] = attrs.field(factory=dict)

    def describe(self) -> str:
        """``pyproject.toml`` and where, for messages; ``no config file`` without one."""
        return str(self.path) if self.path else "no config file"


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
    for key in table:
        if key not in KEYS:
            msg = (
                f"Config file {path}: `{prefix}{key}` is not a conveyor setting.{closest(key, KEYS)} "
                f"The settings are: {', '.join(prefix + k for k in KEYS)}."
            )
            raise ConfigError(msg)
    runner = table.get("runner")
    if runner is not None and not isinstance(runner, str):
        msg = f"Config file {path}: `{prefix}runner` must be a runner name (a string), got {runner!r}."
        raise ConfigError(msg)
    runners = _section(path, table.get("runners", {}), f"{prefix}runners")
    for name, opts in runners.items():
        _section(path, opts, f"{prefix}runners.{name}")
    settings = {k: table[k] for k in CACHE_KEYS if k in table}
    return FileConfig(path, runner, runners, prefix, settings)


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
