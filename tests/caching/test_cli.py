"""`conveyor cache list / clear / info`: what the store holds, as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.caching.store import LocalStore
from conveyor.cli import main


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    monkeypatch.setenv("CONVEYOR_RESULT_STORE", str(tmp_path / "store"))
    s = LocalStore(tmp_path / "store")
    s.save("aa" + "1" * 38, "fetch", b"x" * 100)
    s.save("bb" + "2" * 38, "fetch", b"y")
    s.save("cc" + "3" * 38, "parse", [1, 2])
    return s


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_list_shows_task_key_size_age_where(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON list has every entry with its task and where it is; --task filters."""
    entries = _json(["cache", "list", "--json"], capsys)
    assert isinstance(entries, list)
    assert sorted(e["task"] for e in entries) == ["fetch", "fetch", "parse"]
    assert all(
        Path(e["where"]).is_file() and e["size"] > 0 and e["age_seconds"] >= 0 for e in entries
    )
    only = _json(["cache", "list", "--json", "--task", "parse"], capsys)
    assert [e["key"][:2] for e in only] == ["cc"]  # type: ignore[index, union-attr]
    assert main(["cache", "list"]) == 0
    text = capsys.readouterr().out
    assert "fetch" in text and "parse" in text and "task" in text.splitlines()[0]


def test_info_names_the_store_and_its_size(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """info reports the store's location, entry count and total size."""
    info = _json(["cache", "info", "--json"], capsys)
    assert info == {
        "store": store.location,
        "entries": 3,
        "total_size": sum(e.size for e in store.entries()),
    }


def test_clear_by_task_then_older_than_then_all(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """clear --task removes one task's entries; --older-than a big age removes none; clear removes the rest."""
    assert _json(["cache", "clear", "--task", "fetch", "--json"], capsys) == {
        "removed": 2,
        "store": store.location,
    }
    assert _json(["cache", "clear", "--older-than", "3600", "--json"], capsys)["removed"] == 0  # type: ignore[index]
    assert _json(["cache", "clear", "--json"], capsys)["removed"] == 1  # type: ignore[index]
    assert store.entries() == []
