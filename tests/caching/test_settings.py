"""Which store and defaults the environment and the config file give."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor._config_files import find_config
from conveyor.caching.settings import open_store, resolve_settings
from conveyor.caching.store import FsspecStore, LocalStore
from conveyor.exceptions import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_RESULT_STORE", raising=False)
    monkeypatch.delenv("CONVEYOR_CACHE", raising=False)


def test_default_store_is_next_to_the_config_file(tmp_path: Path) -> None:
    """With a conveyor.toml and no result_store, the store is .conveyor/cache beside it."""
    (tmp_path / "conveyor.toml").write_text('runner = "sequential"\n')
    (tmp_path / "sub").mkdir()
    settings = resolve_settings(find_config(tmp_path / "sub"))
    assert settings.store_spec == str(tmp_path / ".conveyor" / "cache")
    assert settings.default is None


def test_config_sets_store_default_and_limits(tmp_path: Path) -> None:
    """result_store (relative to the file), cache and the limits come from [tool.conveyor]."""
    (tmp_path / "pyproject.toml").write_text(
        "[tool.conveyor]\n"
        'result_store = "results"\ncache = true\ncache_max_bytes = 1000\ncache_max_age = 60\n'
    )
    settings = resolve_settings(find_config(tmp_path))
    assert settings.store_spec == str(tmp_path / "results")
    assert (settings.default, settings.max_bytes, settings.max_age) == (True, 1000, 60)


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CONVEYOR_RESULT_STORE and CONVEYOR_CACHE override the file's settings."""
    (tmp_path / "conveyor.toml").write_text('result_store = "results"\ncache = true\n')
    monkeypatch.setenv("CONVEYOR_RESULT_STORE", "memory://elsewhere")
    monkeypatch.setenv("CONVEYOR_CACHE", "0")
    settings = resolve_settings(find_config(tmp_path))
    assert (settings.store_spec, settings.default) == ("memory://elsewhere", False)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cache = 1\n", "`cache` must be true or false"),
        ("cache_max_bytes = -5\n", "`cache_max_bytes` must be a positive number"),
        ("result_store = 3\n", "`result_store` must be a path or URL string"),
    ],
)
def test_bad_settings_are_one_sentence(tmp_path: Path, text: str, match: str) -> None:
    """A setting of the wrong type names the key and what to give."""
    (tmp_path / "conveyor.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        resolve_settings(find_config(tmp_path))


def test_a_bad_cache_flag_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CONVEYOR_CACHE=maybe is refused with the fix."""
    monkeypatch.setenv("CONVEYOR_CACHE", "maybe")
    with pytest.raises(ConfigError, match=r"CONVEYOR_CACHE='maybe'.*1 or 0"):
        resolve_settings(find_config(tmp_path))


def test_urls_open_the_right_store(tmp_path: Path) -> None:
    """file:// is the local folder store (with its locks); memory:// an fsspec store."""
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    assert isinstance(open_store("memory://x"), FsspecStore)
