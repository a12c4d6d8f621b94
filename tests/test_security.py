"""
Options that name code resolve to what they claim, and what the CLI shows never holds the
password of an address: ``conveyor config`` and ``conveyor run`` (text, ``--json``, logs and
errors) mask it, run for real in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import ConfigError, flow
from conveyor.runners.processes import ProcessesRunner

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-pw"
ADDRESS = f"tcp://user:{SECRET}@127.0.0.1:1"

FLOW = """
from conveyor import flow, task

@task
def add(x, y):
    return x + y

@flow
def sums():
    return add.submit(1, 2).result()
"""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(FLOW, encoding="utf-8")
    return path


def _no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    assert SECRET not in proc.stdout, proc.stdout
    assert SECRET not in proc.stderr, proc.stderr


class TestMaskedAddresses:
    @pytest.mark.parametrize("as_json", [False, True])
    def test_conveyor_config_masks_the_password(self, flow_file: Path, as_json: bool) -> None:
        """`conveyor config` shows the address with its password masked, as text and JSON."""
        pytest.importorskip("conveyor_dask")
        args = ["config", f"{flow_file.name}:sums", "-r", "dask", "-o", f"address={ADDRESS}"]
        proc = run_cli(*args, *(["--json"] if as_json else []), cwd=flow_file.parent)
        assert proc.returncode == 0, proc.stderr
        _no_secret(proc)
        if as_json:
            shown = json.loads(proc.stdout)["options"]["address"]["value"]
            assert shown == "tcp://user:***@127.0.0.1:1"
        else:
            assert "tcp://user:***@127.0.0.1:1" in proc.stdout

    @pytest.mark.parametrize("as_json", [False, True])
    def test_a_failed_connect_masks_the_password(self, flow_file: Path, as_json: bool) -> None:
        """A Dask address that does not answer: the error, and every log line at DEBUG, name
        the address with its password masked."""
        pytest.importorskip("conveyor_dask")
        args = ["run", f"{flow_file.name}:sums", "-r", "dask", "--log-level", "DEBUG"]
        args += ["-o", f"address={ADDRESS}", "-o", "connect_timeout=1"]
        proc = run_cli(*args, *(["--json"] if as_json else []), cwd=flow_file.parent)
        assert proc.returncode != 0
        _no_secret(proc)
        assert "user:***@127.0.0.1:1" in proc.stderr, proc.stderr

    def test_run_json_masks_runner_options(self, flow_file: Path) -> None:
        """A completed run's --json document lists the runner options with the password
        masked (here an initializer argument that is an address)."""
        args = ["run", f"{flow_file.name}:sums", "-r", "processes", "--json", "--log-level"]
        args += ["DEBUG", "-o", "max_workers=1"]
        args += ["-o", "initializer=tests.processes._support:remember"]
        args += ["-o", f"initargs={json.dumps([ADDRESS])}"]
        proc = run_cli(*args, cwd=flow_file.parent)
        assert proc.returncode == 0, proc.stderr
        _no_secret(proc)
        doc = json.loads(proc.stdout)
        assert doc["result"]["json"] == 3
        assert doc["runner_options"]["initargs"] == ["tcp://user:***@127.0.0.1:1"]


class TestInitializer:
    @pytest.mark.parametrize(
        ("name", "kind"),
        [("subprocess.Popen", "type"), ("os.system", "builtin_function_or_method")],
    )
    def test_an_initializer_that_is_not_a_function_of_its_module_is_refused(
        self, tmp_path: Path, name: str, kind: str
    ) -> None:
        """A class or a builtin named as the initializer: one ConfigError at start, and it is
        never called."""
        marker = tmp_path / "MARKER"
        argument = ["touch", str(marker)] if kind == "type" else f"touch {marker}"

        @flow(runner=ProcessesRunner(max_workers=1, initializer=name, initargs=[argument]))
        def never() -> None:
            raise AssertionError("the flow ran")

        with pytest.raises(ConfigError) as info:
            never()
        message = str(info.value)
        module = name.rpartition(".")[0]
        assert message.startswith(f"ProcessesRunner: `initializer={name!r}` is invalid")
        assert f"give a function defined in {module!r}" in message
        assert f"(it names a {kind})" in message
        assert not marker.exists()

    def test_a_function_imported_from_elsewhere_is_refused(self) -> None:
        """A module's name for a function defined in another module is not accepted."""

        @flow(runner=ProcessesRunner(max_workers=1, initializer="tests.test_security:flow"))
        def never() -> None:
            raise AssertionError("the flow ran")

        with pytest.raises(ConfigError, match=r"give a function defined in 'tests\.test_security'"):
            never()
