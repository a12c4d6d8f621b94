"""The config trust model: a config file that another user could have written is not used."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import ConfigError
from conveyor.config import find_config

HOSTILE = """
runner = "dask"
[runners.dask]
cluster_class = "subprocess.Popen"
cluster_kwargs = {{args = "id -un > {marker}", shell = true}}
"""

FLOW = """
from conveyor import flow

@flow
def ok():
    return 1
"""

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root"
)


def _nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A hostile conveyor.toml two folders above the working folder, and its marker path."""
    monkeypatch.delenv("CONVEYOR_SAFE_DIRECTORIES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    marker = tmp_path / "MARKER"
    (tmp_path / "conveyor.toml").write_text(HOSTILE.format(marker=marker))
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "flow.py").write_text(FLOW)
    return work, marker


class TestOwnership:
    @needs_root
    def test_a_file_of_another_user_is_refused(self, nested: tuple[Path, Path]) -> None:
        """A conveyor.toml found by walking up that belongs to `nobody` is refused, in one
        sentence naming the file and how to trust it."""
        work, _ = nested
        config = work.parent.parent / "conveyor.toml"
        os.chown(config, _nobody(), -1)
        with pytest.raises(ConfigError) as caught:
            find_config(work)
        message = str(caught.value)
        assert str(config) in message and "belongs to nobody" in message
        assert "CONVEYOR_SAFE_DIRECTORIES=" in message

    def test_a_file_anyone_may_write_is_refused(self, nested: tuple[Path, Path]) -> None:
        """A config file that every user may write is refused even when it is yours."""
        work, _ = nested
        config = work.parent.parent / "conveyor.toml"
        config.chmod(0o666)
        with pytest.raises(ConfigError, match="can be changed by every user"):
            find_config(work)

    def test_your_own_file_is_used(self, nested: tuple[Path, Path]) -> None:
        """Your own config file, writable by you alone, is used as before."""
        work, _ = nested
        (work.parent.parent / "conveyor.toml").chmod(0o644)
        assert find_config(work).runner == "dask"


class TestSafeDirectories:
    @needs_root
    @pytest.mark.parametrize("how", ["env", "env-star", "user-file"])
    def test_a_listed_folder_is_trusted(
        self, nested: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, how: str
    ) -> None:
        """A foreign file is used once its folder is listed as safe: by the environment, by
        `*`, or in the user configuration."""
        work, _ = nested
        top = work.parent.parent
        os.chown(top / "conveyor.toml", _nobody(), -1)
        if how == "env":
            monkeypatch.setenv("CONVEYOR_SAFE_DIRECTORIES", f"/nowhere{os.pathsep}{top}")
        elif how == "env-star":
            monkeypatch.setenv("CONVEYOR_SAFE_DIRECTORIES", "*")
        else:
            user = Path(os.environ["XDG_CONFIG_HOME"]) / "conveyor" / "config.toml"
            user.parent.mkdir(parents=True)
            user.write_text(f"safe_directories = [{str(top)!r}]\n")
        assert find_config(work).runner == "dask"


@needs_root
def test_conveyor_run_refuses_and_runs_nothing(nested: tuple[Path, Path]) -> None:
    """`conveyor run flow.py:ok` below a foreign config exits with the refusal and never runs
    the command the file names."""
    work, marker = nested
    os.chown(work.parent.parent / "conveyor.toml", _nobody(), -1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "flow.py:ok"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "belongs to nobody" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
