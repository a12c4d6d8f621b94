"""
The distributions behave as DESIGN.md promises, installed by pip into fresh virtual environments.

- ``pip install --find-links <the three wheels built from this repo> "conveyor[dask]"`` gives
  the ``dask`` runner from conveyor-dask, and not ``ray``; neither ``import conveyor`` nor
  ``conveyor runners`` imports ``distributed``.
- A plain (non-editable) ``pip install`` of the repository gives the core alone, whose
  ``conveyor run`` runs ``examples/greetings.py``.
- The third-party example ``examples/conveyor_subprocess``, pip-installed beside the core from
  its own ``pyproject.toml``, is listed and runs greetings when selected by name.

Each scenario builds one virtual environment per test session. pip fetches hatchling and the
backends' dependencies from the package index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = {
    "conveyor-dask": REPO / "plugins" / "dask_runner",
    "conveyor-ray": REPO / "plugins" / "ray_runner",
}
PIP_BOUND = 240.0  # seconds; a bound against a hung pip, not a timing
RUN_BOUND = 60.0


def _env() -> dict[str, str]:
    """The environment for commands in a test venv: nothing of this process's Python setup."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CONVEYOR_")}


def _run(
    cmd: list[Any], *, cwd: Path, bound: float = RUN_BOUND, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        env={**_env(), **(env or {})},
        cwd=cwd,
        timeout=bound,
        check=False,
    )


def _ok(
    cmd: list[Any], *, cwd: Path, bound: float = RUN_BOUND, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = _run(cmd, cwd=cwd, bound=bound, env=env)
    assert done.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {done.returncode}\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}"
    )
    return done


def _pip(*args: Any, cwd: Path) -> None:
    """Run this interpreter's pip (``--python`` points it at a venv without pip of its own)."""
    _ok(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        cwd=cwd,
        bound=PIP_BOUND,
    )


class Venv:
    """A fresh virtual environment made with ``python -m venv --without-pip``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _ok([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
        self.bin = path / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"

    def install(self, *args: Any) -> None:
        _pip("--python", self.python, "install", *args, cwd=self.path)

    def python_ok(self, code: str) -> subprocess.CompletedProcess[str]:
        return _ok([self.python, "-c", code], cwd=self.path)

    def runners(self) -> dict[str, Any]:
        done = _ok([self.bin / "conveyor", "runners", "--json"], cwd=self.path)
        return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three wheels built from this repository: conveyor, conveyor-dask, conveyor-ray."""
    missing = [
        name for name, folder in PLUGINS.items() if not (folder / "pyproject.toml").is_file()
    ]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} cannot be built: no pyproject.toml in {PLUGINS[missing[0]]}."
        )
    out = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "--no-deps", "-w", out, REPO, *PLUGINS.values(), cwd=out)
    built = sorted(p.name.split("-")[0] for p in out.glob("*.whl"))
    assert built == ["conveyor", "conveyor_dask", "conveyor_ray"]
    return out


@pytest.fixture(scope="session")
def dask_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Venv:
    """A venv where ``pip install --find-links <wheels> "conveyor[dask]"`` ran."""
    venv = Venv(tmp_path_factory.mktemp("dask") / "venv")
    venv.install("--find-links", wheels, "conveyor[dask]")
    return venv


@pytest.fixture(scope="session")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A venv where a plain, non-editable ``pip install <repo>`` ran."""
    venv = Venv(tmp_path_factory.mktemp("core") / "venv")
    venv.install(REPO)
    return venv


@pytest.fixture(scope="session")
def third_party_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A venv with the core and the conveyor-subprocess example, both pip-installed."""
    venv = Venv(tmp_path_factory.mktemp("third-party") / "venv")
    venv.install(REPO, REPO / "examples" / "conveyor_subprocess")
    return venv


class TestDaskExtra:
    def test_gives_the_dask_runner_and_not_ray(self, dask_venv: Venv) -> None:
        """`conveyor runners` lists dask from conveyor-dask, the built-ins, and no ray."""
        listed = dask_venv.runners()
        runners = {r["name"]: r for r in listed["runners"]}
        assert set(runners) == {"sequential", "concurrent", "processes", "dask"}
        assert runners["dask"]["distribution"] == "conveyor-dask"
        assert runners["sequential"]["distribution"] == "conveyor"
        assert listed["problems"] == []

    def test_installs_distributed_but_not_ray(self, dask_venv: Venv) -> None:
        """The extra pulled in distributed and conveyor-dask; ray and conveyor-ray are absent."""
        dask_venv.python_ok(
            "from importlib import metadata\n"
            "metadata.version('distributed'); metadata.version('conveyor-dask')\n"
            "for name in ('ray', 'conveyor-ray'):\n"
            "    try:\n"
            "        metadata.version(name)\n"
            "    except metadata.PackageNotFoundError:\n"
            "        continue\n"
            "    raise SystemExit(f'{name} is installed')\n"
        )
        done = _run([dask_venv.python, "-c", "import ray"], cwd=dask_venv.path)
        assert done.returncode != 0
        assert "No module named 'ray'" in done.stderr

    def test_discovery_imports_no_backend(self, dask_venv: Venv) -> None:
        """`import conveyor` and listing the runners never import distributed."""
        dask_venv.python_ok("import conveyor, sys; assert 'distributed' not in sys.modules")
        dask_venv.python_ok(
            "import sys, contextlib, io\n"
            "from conveyor.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['runners']) == 0\n"
            "assert 'dask' in __import__('conveyor.plugins').plugins.get_host().registry.names()\n"
            "assert 'distributed' not in sys.modules, 'conveyor runners imported distributed'\n"
        )

    def test_uses_the_built_wheels(self, dask_venv: Venv) -> None:
        """conveyor comes from the venv's site-packages, not from this checkout."""
        done = dask_venv.python_ok(
            "import conveyor, conveyor_dask; print(conveyor.__file__); print(conveyor_dask.__file__)"
        )
        for line in done.stdout.split():
            assert Path(line).resolve().is_relative_to(dask_venv.path.resolve()), line


def test_the_core_wheel_carries_the_report_assets(wheels: Path) -> None:
    """The run report's script and stylesheet are package data in the core's wheel."""
    import zipfile  # deferred: only this test reads a wheel

    (wheel,) = wheels.glob("conveyor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"conveyor/report/report.js", "conveyor/report/report.css"} <= names


class TestCoreAlone:
    def test_conveyor_run_runs_greetings(self, core_venv: Venv) -> None:
        """`conveyor run examples/greetings.py:greetings` completes all eight task runs."""
        done = _ok(
            [
                core_venv.bin / "conveyor",
                "run",
                REPO / "examples" / "greetings.py:greetings",
                "--json",
            ],
            cwd=core_venv.path,
        )
        summary = json.loads(done.stdout[done.stdout.index("{") :])
        assert summary["state"] == "Completed"
        assert summary["runner"] == "concurrent"
        assert summary["task_runs"] == {"Completed": 8}

    def test_lists_only_the_builtins_and_names_the_extra(self, core_venv: Venv) -> None:
        """The core alone has sequential and concurrent; asking for dask names the pip command."""
        assert {r["name"] for r in core_venv.runners()["runners"]} == {
            "sequential",
            "concurrent",
            "processes",
        }
        done = _run(
            [
                core_venv.bin / "conveyor",
                "run",
                REPO / "examples" / "greetings.py:greetings",
                "--runner",
                "dask",
            ],
            cwd=core_venv.path,
        )
        assert done.returncode == 2
        assert 'pip install "conveyor[dask]"' in done.stderr
        assert "Traceback" not in done.stderr
        core_venv.python_ok(
            "import conveyor, pathlib; "
            f"assert not pathlib.Path(conveyor.__file__).resolve().is_relative_to({str(REPO)!r})"
        )


class TestThirdPartyWheel:
    def test_listed_and_selected_by_name(self, third_party_venv: Venv) -> None:
        """pip-installed conveyor-subprocess is listed, and CONVEYOR_RUNNER=subprocess runs on it."""
        runners = {r["name"]: r for r in third_party_venv.runners()["runners"]}
        assert runners["subprocess"]["distribution"] == "conveyor-subprocess"
        assert runners["subprocess"]["version"] == "0.1.0"
        done = _ok(
            [
                third_party_venv.bin / "conveyor",
                "run",
                REPO / "examples" / "greetings.py:greetings",
                "-p",
                'names=["zaphod", "trillian"]',
                "--json",
            ],
            cwd=third_party_venv.path,
            env={"CONVEYOR_RUNNER": "subprocess"},
        )
        summary = json.loads(done.stdout[done.stdout.index("{") :])
        assert (summary["runner"], summary["state"]) == ("subprocess", "Completed")
        assert summary["task_runs"] == {"Completed": 4}
        assert "hello zaphod" in done.stderr  # printed in a child, which prints to stderr
