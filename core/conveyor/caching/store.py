"""
Result stores: where cached results live, written atomically and checked when read.

An entry is one file: a header line (``CONVEYOR-CACHE 1``), a JSON line (task, created,
expires, payload size and SHA-256), then the pickled value. A write goes to a temporary file
that is renamed over the entry, so a reader sees the old entry or the new one, never a torn
one; a failed write (a full disk) leaves the previous entry as it was. An entry whose checksum,
size or header does not match is reported as corrupt (the engine recomputes it) and never
returned.

:class:`LocalStore` is a folder with a file lock per key; :class:`FsspecStore` is any fsspec URL
(``memory://``, ``file://``, ``s3://``...) without locking: two flows computing one key at the
same moment may both compute it, and the last rename wins (both values are whole).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "CorruptEntry",
    "Entry",
    "FsspecStore",
    "LocalStore",
    "ResultStore",
    "decode",
    "dumps",
    "expired",
]

MAGIC = b"CONVEYOR-CACHE 1\n"
SUFFIX = ".entry"


def _nothing() -> None:
    pass


class CorruptEntry(Exception):
    """An entry that exists but cannot be trusted (bad header, size or checksum)."""


@attrs.frozen
class Entry:
    """One cached result, as ``conveyor cache list`` shows it."""

    key: str
    task: str
    size: int
    created: float
    expires: float | None
    where: str


def dumps(value: Any) -> bytes:
    """The pickled bytes of a value (cloudpickle if installed, for what pickle refuses)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle  # deferred: optional, needed only for what pickle refuses

        data: bytes = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return data


def _encode(key: str, task: str, payload: bytes, expiration: float | None) -> bytes:
    now = time.time()
    meta = {
        "key": key,
        "task": task,
        "created": now,
        "expires": None if expiration is None else now + expiration,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return MAGIC + json.dumps(meta, sort_keys=True).encode() + b"\n" + payload


def _header(blob: bytes, where: str) -> tuple[dict[str, Any], int]:
    if not blob.startswith(MAGIC):
        msg = f"{where} has no conveyor cache header"
        raise CorruptEntry(msg)
    end = blob.find(b"\n", len(MAGIC))
    try:
        meta: dict[str, Any] = json.loads(blob[len(MAGIC) : end])
    except ValueError as exc:
        msg = f"{where} has an unreadable header"
        raise CorruptEntry(msg) from exc
    if end < 0 or not isinstance(meta, dict):
        msg = f"{where} has an unreadable header"
        raise CorruptEntry(msg)
    return meta, end + 1


def decode(blob: bytes, where: str) -> tuple[dict[str, Any], Any]:
    """The header and the value of an entry's bytes; raises :class:`CorruptEntry`."""
    meta, start = _header(blob, where)
    payload = blob[start:]
    if len(payload) != meta.get("size") or hashlib.sha256(payload).hexdigest() != meta.get(
        "sha256"
    ):
        msg = f"{where} is truncated or corrupt (its checksum does not match)"
        raise CorruptEntry(msg)
    try:
        return meta, pickle.loads(payload)
    except Exception as exc:
        msg = f"{where} could not be unpickled ({type(exc).__name__}: {exc})"
        raise CorruptEntry(msg) from exc


def _entry(meta: dict[str, Any], size: int, where: str) -> Entry:
    return Entry(
        str(meta.get("key", "")),
        str(meta.get("task", "?")),
        size,
        float(meta.get("created", 0.0)),
        meta.get("expires"),
        where,
    )


def expired(meta: dict[str, Any], now: float | None = None) -> bool:
    """Whether an entry's ``cache_expiration`` has passed."""
    expires = meta.get("expires")
    return expires is not None and (now or time.time()) >= float(expires)


class ResultStore:
    """The interface of a result store; :class:`LocalStore` and :class:`FsspecStore` are two."""

    #: Where the store is, for messages and ``conveyor cache info``.
    location: str = ""
    #: Whether workers on other machines can reach it (an fsspec URL that is not local).
    shared: bool = False

    def read(self, key: str) -> bytes | None:
        """The entry's bytes, or None when there is none."""
        raise NotImplementedError

    def write(self, key: str, blob: bytes) -> None:
        """Write the entry atomically; raise OSError on failure (the old entry stays)."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Whether an entry exists for ``key`` (its content is not checked)."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the entry for ``key``, if any."""
        raise NotImplementedError

    def keys(self) -> Iterator[str]:
        """The keys of every entry."""
        raise NotImplementedError

    def where(self, key: str) -> str:
        """Where the entry for ``key`` is (a path or URL)."""
        raise NotImplementedError

    def acquire(self, key: str) -> Callable[[], None]:
        """Hold ``key`` while computing it and return the release; stores that cannot lock
        return a release that does nothing."""
        return _nothing

    def check_writable(self) -> None:
        """Raise OSError if an entry cannot be written here."""
        self.write("0" * 40 + "-probe", b"probe")
        self.delete("0" * 40 + "-probe")

    # -- the operations the engine and the CLI use --------------------------------------

    def load(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` for a valid entry, ``(False, None)`` for none or an expired one."""
        blob = self.read(key)
        if blob is None:
            return False, None
        meta, value = decode(blob, self.where(key))
        if expired(meta):
            return False, None
        return True, value

    def save(self, key: str, task: str, value: Any, expiration: float | None = None) -> int:
        """Write ``value`` for ``key``; return the entry's size. Raises OSError."""
        blob = _encode(key, task, dumps(value), expiration)
        self.write(key, blob)
        return len(blob)

    def entries(self) -> list[Entry]:
        """Every entry's description (corrupt ones are listed with task ``?``)."""
        out = []
        for key in self.keys():
            blob = self.read(key)
            if blob is None:
                continue
            try:
                meta, _ = _header(blob, key)
            except CorruptEntry:
                meta = {"key": key}
            out.append(_entry(meta, len(blob), self.where(key)))
        return out


class _KeyLocks:
    """
    One lock per key for the threads of this process, and across processes a POSIX record lock
    on one byte of a shared lock file at an offset taken from the key (a record lock belongs to
    the process, so the threads of one process queue on the thread lock first).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, list[Any]] = {}  # key -> [thread lock, users]
        self._fds: dict[Path, int] = {}

    def _fd(self, root: Path) -> int:
        with self._guard:
            fd = self._fds.get(root)
            if fd is None:
                root.mkdir(parents=True, exist_ok=True)
                # Kept open for the process's life: closing any descriptor of the file would
                # drop every record lock this process holds on it.
                fd = os.open(root / "locks", os.O_RDWR | os.O_CREAT, 0o644)
                self._fds[root] = fd
            return fd

    def acquire(self, root: Path, key: str) -> Callable[[], None]:
        fd = self._fd(root)
        with self._guard:
            entry = self._held.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        entry[0].acquire()
        offset = int(key[:15], 16) if len(key) >= 15 else 0
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
        except BaseException:
            self._drop(key, entry)
            raise
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
            finally:
                self._drop(key, entry)

        return release

    def _drop(self, key: str, entry: list[Any]) -> None:
        entry[0].release()
        with self._guard:
            entry[1] -= 1
            if not entry[1]:
                del self._held[key]


_LOCKS = _KeyLocks()


@attrs.define
class LocalStore(ResultStore):
    """A folder on this machine; one file per entry, a lock per key (see :class:`_KeyLocks`)."""

    root: Path
    _made: set[str] = attrs.field(factory=set, init=False, repr=False, eq=False)

    @property
    def location(self) -> str:  # type: ignore[override]
        return str(self.root)

    def _path(self, key: str) -> str:
        # Strings, not Path objects: this is on every cache hit's path.
        return f"{os.fspath(self.root)}/{key[:2]}/{key}{SUFFIX}"

    def where(self, key: str) -> str:
        return self._path(key)

    def read(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def write(self, key: str, blob: bytes) -> None:
        path = self._path(key)
        folder = os.path.dirname(path)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=SUFFIX)
        try:
            # No fsync: after a power loss an entry may be empty or short, and its checksum
            # then makes it a miss; it is never returned torn.
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob(f"??/*{SUFFIX}")):
            if not path.name.startswith("."):
                yield path.name[: -len(SUFFIX)]

    def acquire(self, key: str) -> Callable[[], None]:
        return _LOCKS.acquire(self.root, key)


@attrs.define
class FsspecStore(ResultStore):
    """Any fsspec URL; writes go to a temporary name, then move over the entry."""

    url: str
    fs: Any = attrs.field(repr=False)
    root: str = attrs.field(repr=False)
    shared: bool = True

    @property
    def location(self) -> str:  # type: ignore[override]
        return self.url

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}{SUFFIX}"

    def where(self, key: str) -> str:
        return self.fs.unstrip_protocol(self._path(key))  # type: ignore[no-any-return]

    def read(self, key: str) -> bytes | None:
        try:
            with self.fs.open(self._path(key), "rb") as f:
                return f.read()  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def write(self, key: str, blob: bytes) -> None:
        path = self._path(key)
        tmp = f"{self.root}/{key[:2]}/.tmp-{os.urandom(6).hex()}-{key}{SUFFIX}"
        self.fs.makedirs(f"{self.root}/{key[:2]}", exist_ok=True)
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(blob)
            self.fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(key))

    def keys(self) -> Iterator[str]:
        try:
            found = self.fs.glob(f"{self.root}/*/*{SUFFIX}")
        except FileNotFoundError:
            return
        for path in sorted(found):
            name = str(path).rsplit("/", 1)[-1]
            if not name.startswith("."):
                yield name[: -len(SUFFIX)]
