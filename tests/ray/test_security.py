"""
The files of a local Ray the runner starts are the driver's user's alone: its temp folder is in
a 0700 folder of that user's, every file in it is 0600 (modes listed), another user can list,
read or write nothing there (tried for real, as nobody), the token file Ray uses is 0600, and
the folder is gone after the flow.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("conveyor_ray")

from conveyor.exceptions import BackendUnavailable
from conveyor_ray import _private_dir
from tests.ray._support import run_driver

DRIVER = textwrap.dedent(
    """
    import json, os, pwd, stat, sys
    # No token given: Ray 2.60 would write ~/.ray/auth_token itself, 0644.
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(name, None)
    from pathlib import Path
    from conveyor import flow
    from conveyor_ray import RayRunner
    from tests.ray import _tasks as rt

    root = Path(os.environ["TMPDIR"]) / f"conveyor-ray-{os.getuid()}"

    def modes():
        found = {}
        for folder, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode):
                    found[path] = [stat.S_IMODE(mode), stat.S_ISDIR(mode), os.lstat(path).st_uid]
        return found

    def as_nobody(paths):
        # What another user gets: fork, drop to nobody, try to list, read and write each path.
        if os.geteuid() != 0:
            return {"skipped": "not root"}
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(pwd.getpwnam("nobody").pw_gid)
                os.setuid(pwd.getpwnam("nobody").pw_uid)
                outcome = {}
                for path in paths:
                    try:
                        if os.path.isdir(path):
                            os.listdir(path)
                            open(os.path.join(path, "planted"), "w").close()
                        else:
                            open(path, "rb").close()
                        outcome[path] = "allowed"
                    except PermissionError:
                        outcome[path] = "refused"
                    except OSError as exc:
                        outcome[path] = repr(exc)
                os.write(write, json.dumps(outcome).encode())
            finally:
                os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        return json.loads(b"".join(chunks) or b"{}")

    seen = {}

    @flow(runner=RayRunner())
    def probe():
        seen["values"] = [f.result(timeout=60) for f in rt.add.map(range(3), range(3))]
        seen["root"] = [stat.S_IMODE(os.lstat(root).st_mode), os.lstat(root).st_uid]
        seen["during"] = modes()
        sessions = [p for p in root.glob("*/session_*") if not p.is_symlink()]
        seen["sessions"] = [str(p) for p in sessions]
        seen["nobody"] = as_nobody(sorted(seen["during"]))

    probe()
    token = Path.home() / ".ray" / "auth_token"
    print("RESULT " + json.dumps({
        **seen,
        "uid": os.getuid(),
        "after": sorted(str(p) for p in root.iterdir()),
        "token": stat.S_IMODE(token.stat().st_mode) if token.exists() else None,
        "default_sessions": [
            p.name for p in Path("/tmp/ray").glob(f"session_*_{os.getpid()}")
        ],
    }), flush=True)
    """
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp folder with a short path (Ray's socket paths must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cs", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class TestLocalRayFiles:
    def test_a_local_rays_files_are_private_and_removed_after(
        self, short_tmp: Path, tmp_path: Path
    ) -> None:
        """Under the per-user 0700 root no folder or file is open to group or others, user
        nobody cannot list the session, the token Ray made is 0600, and after the flow the
        root is empty and nothing went to /tmp/ray."""
        home = tmp_path / "home"
        home.mkdir()
        env = {"TMPDIR": str(short_tmp), "HOME": str(home)}
        out = run_driver(DRIVER, cwd=tmp_path, timeout=180, env=env)
        assert out["values"] == [0, 2, 4], out
        assert out["root"] == [0o700, out["uid"]], out
        assert out["sessions"], out  # Ray really used the private folder
        assert len(out["during"]) > 20, out  # its logs, sockets and caches are there
        assert {u for _m, _d, u in out["during"].values()} == {out["uid"]}
        # Every file Ray wrote is the user's alone (Ray's processes start with umask 077) ...
        files_open = {p: oct(m) for p, (m, d, _u) in out["during"].items() if m & 0o077 and not d}
        assert files_open == {}, files_open
        # ... and Ray's 0777 folders are behind the 0700 root: user nobody can list, read or
        # write nothing there.
        if os.geteuid() == 0:
            assert set(out["nobody"]) == set(out["during"]), out["nobody"]
            allowed = {p: r for p, r in out["nobody"].items() if r != "refused"}
            assert allowed == {}, allowed
        assert out["token"] == 0o600, out
        assert out["after"] == [], out
        assert out["default_sessions"] == [], out
        assert out["returncode"] == 0


class TestPrivateDir:
    def test_a_root_that_belongs_to_someone_else_is_refused(
        self, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A per-user folder that is not this user's own (here: a symlink) is refused."""
        monkeypatch.setenv("TMPDIR", str(short_tmp))
        monkeypatch.setattr(tempfile, "tempdir", None)
        target = short_tmp / "elsewhere"
        target.mkdir()
        (short_tmp / f"conveyor-ray-{os.getuid()}").symlink_to(target)
        with pytest.raises(BackendUnavailable, match="is not a folder of this user's"):
            _private_dir.PrivateDir()

    def test_a_dead_drivers_folder_is_removed_by_the_next_start(
        self, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A folder nobody holds the lock of is removed; a locked one is kept, then removed."""
        monkeypatch.setenv("TMPDIR", str(short_tmp))
        monkeypatch.setattr(tempfile, "tempdir", None)
        live = _private_dir.PrivateDir()
        dead = _private_dir.PrivateDir()
        dead.remove()
        dead.path.mkdir()
        (dead.path / ".conveyor-lock").write_text("")
        third = _private_dir.PrivateDir()
        try:
            assert live.path.exists() and not dead.path.exists()
            assert stat.S_IMODE(third.path.stat().st_mode) == 0o700
        finally:
            live.remove()
            third.remove()
        assert list(live.path.parent.iterdir()) == []


class TestTokenFile:
    def test_conveyor_writes_the_token_file_0600(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No token given: the token file is created 0600; an existing 0644 one becomes 0600."""
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
        monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        token = tmp_path / ".ray" / "auth_token"
        _private_dir.private_token_file()
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert len(token.read_text()) == 64
        token.chmod(0o644)
        _private_dir.private_token_file()
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
