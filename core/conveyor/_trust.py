"""
Which configuration files conveyor may use: a file found by walking up from the working
directory is used only if it belongs to you or root and nobody else can write it, or if its
folder is listed as safe (the way git's ``safe.directory`` works).

Safe folders come from ``CONVEYOR_SAFE_DIRECTORIES`` (folders separated by ``os.pathsep``;
``*`` trusts every folder) and from ``safe_directories = [...]`` in your user configuration,
``$XDG_CONFIG_HOME/conveyor/config.toml`` (``~/.config/conveyor/config.toml``).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from conveyor.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["SAFE_ENV", "check_trusted", "user_config_path"]

SAFE_ENV = "CONVEYOR_SAFE_DIRECTORIES"


def user_config_path() -> Path:
    """Your user-level conveyor configuration file (it may not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "conveyor" / "config.toml"


def _safe_folders() -> list[str]:
    folders = [f for f in os.environ.get(SAFE_ENV, "").split(os.pathsep) if f.strip()]
    path = user_config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return folders
    listed = data.get("safe_directories", [])
    if isinstance(listed, list):
        folders += [str(f) for f in listed if isinstance(f, str)]
    return folders


def _listed(folder: Path) -> bool:
    for entry in _safe_folders():
        if entry.strip() == "*":
            return True
        try:
            safe = Path(entry).expanduser().resolve()
        except OSError:
            continue
        if folder == safe or safe in folder.parents:
            return True
    return False


def _owner_name(uid: int) -> str:
    try:
        import pwd  # deferred: only when a file is refused, and only on POSIX

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_trusted(path: Path) -> None:
    """
    Raise :class:`~conveyor.ConfigError` if ``path`` belongs to another user (not you, not
    root) or anyone may write it, and its folder is not listed as safe.
    """
    if not hasattr(os, "getuid"):  # no owners to compare (Windows)
        return
    info = path.stat()
    mine = info.st_uid in (os.getuid(), 0)
    writable_by_all = bool(info.st_mode & stat.S_IWOTH)
    if mine and not writable_by_all:
        return
    if _listed(path.parent.resolve()):
        return
    why = (
        f"belongs to {_owner_name(info.st_uid)}"
        if not mine
        else "can be changed by every user of this machine"
    )
    msg = (
        f"Config file {path} {why}, so conveyor will not use it; if you trust it, set "
        f"{SAFE_ENV}={path.parent} (or list that folder under `safe_directories` in "
        f"{user_config_path()}), or remove the file."
    )
    raise ConfigError(msg)
