"""
Which result store a flow run uses, whether caching is on by default, and the store's limits.

The store is, in order: ``CONVEYOR_RESULT_STORE``; ``result_store`` in the config file (a
relative path is relative to that file); ``.conveyor/cache`` next to the config file that was
found; the user's cache folder (``platformdirs``, if installed); ``~/.cache/conveyor``. A URL
with a scheme (``memory://``, ``s3://``) needs fsspec and a backend for that scheme.
``CONVEYOR_CACHE=1`` (or ``cache = true`` in the config) turns caching on for every task that
does not say; ``cache_max_bytes`` and ``cache_max_age`` (seconds) prune the oldest entries.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs

from conveyor._config_files import FileConfig, find_config
from conveyor.caching.store import FsspecStore, LocalStore, ResultStore
from conveyor.exceptions import ConfigError

__all__ = ["CACHE_ENV", "STORE_ENV", "CacheSettings", "open_store", "prune", "resolve_settings"]

STORE_ENV = "CONVEYOR_RESULT_STORE"
CACHE_ENV = "CONVEYOR_CACHE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@attrs.frozen
class CacheSettings:
    """What the environment and the config file say about caching."""

    store_spec: str
    #: Whether tasks that leave ``cache`` unset are cached (None: not said).
    default: bool | None = None
    max_bytes: int | None = None
    max_age: float | None = None


def _default_root(config: FileConfig) -> str:
    if config.path is not None:
        return str(config.path.parent / ".conveyor" / "cache")
    try:
        import platformdirs  # deferred: optional, and only when no config file says

        return str(Path(platformdirs.user_cache_dir("conveyor")) / "results")
    except ImportError:
        return str(Path.home() / ".cache" / "conveyor" / "results")


def _flag(raw: str, where: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    msg = f"{where}={raw!r} is not a yes/no value; set it to 1 or 0."
    raise ConfigError(msg)


def _number(config: FileConfig, name: str) -> Any:
    value = config.settings.get(name)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        msg = f"Config file {config.describe()}: `{config.prefix}{name}` must be a positive number."
        raise ConfigError(msg)
    return value


def resolve_settings(config: FileConfig | None = None) -> CacheSettings:
    """The cache settings from the environment and the nearest config file."""
    config = find_config() if config is None else config
    spec = os.environ.get(STORE_ENV) or None
    if spec is None:
        given = config.settings.get("result_store")
        if given is not None and not isinstance(given, str):
            msg = f"Config file {config.describe()}: `{config.prefix}result_store` must be a path or URL string."
            raise ConfigError(msg)
        if given and "://" not in given and config.path is not None:
            given = str(config.path.parent / given)
        spec = given
    default: bool | None = None
    raw = os.environ.get(CACHE_ENV)
    if raw is not None and raw.strip():
        default = _flag(raw, CACHE_ENV)
    elif config.settings.get("cache") is not None:
        value = config.settings["cache"]
        if not isinstance(value, bool):
            msg = f"Config file {config.describe()}: `{config.prefix}cache` must be true or false."
            raise ConfigError(msg)
        default = value
    return CacheSettings(
        spec or _default_root(config),
        default,
        _number(config, "cache_max_bytes"),
        _number(config, "cache_max_age"),
    )


def open_store(spec: str) -> ResultStore:
    """
    The store for a path or URL; a URL needs fsspec and a backend for its scheme, else a
    :class:`~conveyor.ConfigError` that says what to install.
    """
    scheme, sep, _ = spec.partition("://")
    if not sep or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return LocalStore(Path(spec).expanduser())
    try:
        import fsspec  # deferred: optional, only for URL stores
    except ImportError:
        msg = (
            f"Result store {spec!r} is a URL, which needs fsspec; install `conveyor[fsspec]` "
            "or give a local folder."
        )
        raise ConfigError(msg) from None
    try:
        fs, root = fsspec.core.url_to_fs(spec)
    except (ImportError, ValueError) as exc:
        msg = (
            f"Result store {spec!r}: fsspec has no usable backend for `{scheme}://` ({exc}); "
            "install the package for that scheme or use another store."
        )
        raise ConfigError(msg) from exc
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return LocalStore(Path(root))
    return FsspecStore(spec, fs, str(root).rstrip("/"), shared=protocol != "memory")


def prune(store: ResultStore, max_bytes: int | None, max_age: float | None) -> int:
    """Remove entries older than ``max_age`` and the oldest beyond ``max_bytes``; return how many."""
    if max_bytes is None and max_age is None:
        return 0
    entries = sorted(store.entries(), key=lambda e: e.created)
    removed = 0
    now = time.time()
    total = sum(e.size for e in entries)
    for entry in entries:
        too_old = max_age is not None and now - entry.created > max_age
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            continue
        store.delete(entry.key)
        total -= entry.size
        removed += 1
    return removed
