"""
The private folder of a local Ray that conveyor starts, and the token file it may need.

Ray keeps its sockets, logs and runtime-environment caches under its temp folder (``/tmp/ray``
by default) and makes the session's folders world-writable (0777, no sticky bit), so another
user of the machine could replace a socket or a cached package. conveyor gives each local Ray
it starts a folder of its own, ``<tmp>/conveyor-ray-<uid>/r<random>``, under a per-user folder
of mode 0700 that must belong to this user: nobody else can enter it, so nothing below it can
be read, listed or replaced by another user, whatever its mode. Ray's processes start with
umask 077, so the files they write are 0600 too; Ray's own folders below stay 0777 (every Ray
process makes them so again as it starts). The folder is removed when conveyor shuts that Ray
down; the folder of a driver that died is removed by the next start, which finds it unlocked.

Paths stay short: a Unix socket path holds at most 107 bytes, and Ray's session folder and
socket name add about 64 to the temp folder's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from conveyor.exceptions import BackendUnavailable

__all__ = ["PrivateDir", "private_token_file", "umask"]

logger = logging.getLogger("conveyor.ray")

# Ray's session folder name and socket name, at their longest, and the socket path limit.
_RAY_SUFFIX = len("/session_2026-12-02_12-58-07_967555_4194304/sockets/plasma_store")
_SOCKET_PATH_LIMIT = 107
_LOCK = ".conveyor-lock"
_TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")

# umask is per process: starts that change it take turns.
_umask_lock = threading.Lock()


def _base() -> Path:
    """``<tmp>/conveyor-ray-<uid>``, or under /tmp when the temp folder's path is too long."""
    name = f"conveyor-ray-{os.getuid()}"
    room = _SOCKET_PATH_LIMIT - _RAY_SUFFIX - len("/r12345678") - len(name) - 1
    tmp = tempfile.gettempdir()
    return Path(tmp if len(tmp) <= room else "/tmp") / name


def _user_root() -> Path:
    """The per-user folder: created 0700, refused unless it is this user's own real folder."""
    root = _base()
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(root)
    except OSError as exc:
        msg = f"conveyor could not make its private Ray folder {root} ({exc}); set TMPDIR to a folder of yours."
        raise BackendUnavailable(msg) from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        msg = (
            f"{root} is not a folder of this user's, so conveyor will not start Ray in it; "
            "remove it, or set TMPDIR to a folder of yours."
        )
        raise BackendUnavailable(msg)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(root, 0o700)
    return root


def _locked_by_someone(folder: Path) -> bool:
    """Whether a live conveyor process holds ``folder``'s lock (or it is too new to judge)."""
    import fcntl  # deferred: POSIX only, and only when a local Ray starts

    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True  # being made right now, or not ours: leave it
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


class PrivateDir:
    """One local Ray's temp folder (``path``), locked by this process while Ray runs."""

    def __init__(self) -> None:
        import fcntl  # deferred: POSIX only, and only when a local Ray starts

        root = _user_root()
        for stale in root.iterdir():
            if stale.is_dir() and not stale.is_symlink() and not _locked_by_someone(stale):
                logger.debug("Removing the folder of a local Ray that is gone: %s", stale)
                shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix="r", dir=root))  # mode 0700
        self._lock: int | None = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def __repr__(self) -> str:
        return f"<PrivateDir {self.path}>"

    def remove(self) -> None:
        """Delete the folder and release its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """This process's umask is ``mask`` for the block (the processes it starts inherit it)."""
    with _umask_lock:
        old = os.umask(mask)
        try:
            yield
        finally:
            os.umask(old)


def private_token_file() -> None:
    """
    Make sure the token file a local Ray will use is this user's alone: Ray 2.60, starting a
    local Ray with token authentication and no token given, writes ``~/.ray/auth_token`` with
    the default umask (0644). conveyor writes it first, 0600, or makes an existing one 0600.
    """
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    if any(os.environ.get(name) for name in _TOKEN_VARS):
        return
    import secrets  # deferred: only for a local Ray's token

    path = Path.home() / ".ray" / "auth_token"
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            logger.warning("Making the Ray token file %s readable by you only (0600).", path)
            os.chmod(path, 0o600)
        return
    except OSError:
        logger.debug("Could not write the Ray token file %s.", path, exc_info=True)
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
