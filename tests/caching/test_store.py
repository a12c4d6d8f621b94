"""Result stores: atomic, checksummed entries; a corrupt one is never returned; a failed write keeps the old one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor.caching.settings import open_store, prune
from conveyor.caching.store import CorruptEntry, LocalStore
from conveyor.exceptions import ConfigError

KEY = "ab" + "0" * 38


@pytest.mark.parametrize("spec", ["local", "memory://conveyor-tests/store", "file"])
def test_round_trip_and_listing(spec: str, tmp_path: Path) -> None:
    """A saved value loads back, shows in entries() with its task, and delete removes it."""
    url = {"local": str(tmp_path), "file": f"file://{tmp_path}"}.get(spec, spec)
    store = open_store(url)
    store.save(KEY, "inc", {"x": [1, 2]})
    assert store.load(KEY) == (True, {"x": [1, 2]})
    [entry] = store.entries()
    assert (entry.task, entry.key) == ("inc", KEY)
    store.delete(KEY)
    assert store.load(KEY) == (False, None)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_entry_is_refused(damage: str, tmp_path: Path) -> None:
    """A truncated, bit-flipped or foreign file raises CorruptEntry instead of returning a value."""
    store = LocalStore(tmp_path)
    store.save(KEY, "inc", list(range(100)))
    path = Path(store.where(KEY))
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[:-10])
    elif damage == "flip":
        path.write_bytes(blob[:-5] + bytes([blob[-5] ^ 0xFF]) + blob[-4:])
    else:
        path.write_bytes(b"not an entry")
    with pytest.raises(CorruptEntry):
        store.load(KEY)


def test_expired_entry_is_a_miss(tmp_path: Path) -> None:
    """An entry past its expiration loads as a miss."""
    store = LocalStore(tmp_path)
    store.save(KEY, "inc", 1, expiration=-1.0)
    assert store.load(KEY) == (False, None)


def test_a_write_that_fails_midway_keeps_the_previous_entry(tmp_path: Path) -> None:
    """
    A real filesystem error while writing (the file-size limit, as on a full disk: EFBIG)
    raises, leaves the old entry readable, and leaves no temporary file.
    """
    store = LocalStore(tmp_path)
    store.save(KEY, "inc", "old")
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from conveyor.caching.store import LocalStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            LocalStore(Path({str(tmp_path)!r})).save({KEY!r}, "inc", b"x" * 100_000)
        except OSError as exc:
            print("failed", exc.errno)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("failed"), out.stderr
    assert store.load(KEY) == (True, "old")
    assert [p.name for p in Path(store.where(KEY)).parent.iterdir()] == [KEY + ".entry"]


def test_unknown_scheme_is_a_config_error() -> None:
    """A URL whose scheme fsspec has no backend for is one sentence naming it and the fix."""
    with pytest.raises(ConfigError, match=r"no usable backend for `nosuchscheme://`.*install"):
        open_store("nosuchscheme://bucket/x")


def test_prune_removes_oldest_beyond_the_size_limit(tmp_path: Path) -> None:
    """With a limit of about two entries, the oldest of three goes."""
    store = LocalStore(tmp_path)
    sizes = []
    for i in range(3):
        key = f"{i:02d}" + "0" * 38
        sizes.append(store.save(key, "t", b"x" * 1000))
        path = Path(store.where(key))
        os.utime(path)
    assert prune(store, max_bytes=sum(sizes[1:]), max_age=None) == 1
    assert [e.key[:2] for e in store.entries()] == ["01", "02"]
