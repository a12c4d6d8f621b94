"""
A third-party runner plugin, installed for real: ``examples/conveyor_subprocess``.

The plugin is installed the way pip leaves a distribution on disk, without pip or the network:
a ``conveyor_subprocess-<version>.dist-info`` folder (its ``METADATA`` and ``entry_points.txt``
written from the example's own ``pyproject.toml``) in a temporary folder on ``sys.path``, next
to the example's source folder (the idea of importlib_metadata's ``DistInfoPkg`` fixture).
conveyor's plugin host, which reads the ``*.dist-info`` folders on ``sys.path`` itself as
``importlib.metadata`` would, finds it like any installed distribution.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from conveyor import ConfigError, State, StateType, flow, task
from conveyor.plugins import PluginHost, use_host
from conveyor.runners import Runner
from conveyor.testing import RunnerConformance, wait_until
from conveyor.testing import _tasks as t

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conveyor_subprocess"
GUIDE = EXAMPLE.parents[1] / "README.md"  # the "Write your own runner" section
BOUND = 60.0  # a bound against hangs, not a timing


def _pyproject() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    return data


PROJECT = _pyproject()["project"]
VERSION = PROJECT["version"]


def _write_dist_info(site: Path, project: dict[str, Any]) -> None:
    """
    Install ``project`` (a pyproject.toml ``[project]`` table) into ``site`` as pip would leave
    it for discovery: a ``<name>-<version>.dist-info`` with METADATA and entry_points.txt.
    """
    name, version = project["name"], project["version"]
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    requires = "".join(f"Requires-Dist: {r}\n" for r in project.get("dependencies", []))
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}", encoding="utf-8"
    )
    lines = ["[conveyor]"]
    lines += [f"{ep} = {value}" for ep, value in project["entry-points"]["conveyor"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _subprocess_env(pythonpath: list[str]) -> dict[str, str]:
    """This process's environment without CONVEYOR_*, with ``pythonpath`` put first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """
    conveyor-subprocess installed as a real distribution for this module's tests; yields the
    ``sys.path`` entries that install it.
    """
    import importlib

    # Its declared dependency; pip would install it. Plain pickle cannot pickle @task functions.
    pytest.importorskip("cloudpickle", reason="conveyor-subprocess needs cloudpickle")
    site = tmp_path_factory.mktemp("site-packages")
    _write_dist_info(site, PROJECT)
    entries = [str(site), str(EXAMPLE)]
    sys.path[:0] = entries
    importlib.invalidate_caches()
    try:
        yield entries
    finally:
        for entry in entries:
            sys.path.remove(entry)
        for name in [m for m in sys.modules if m.split(".")[0] == "conveyor_subprocess"]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def host(installed: list[str]) -> Iterator[PluginHost]:
    """A fresh plugin host that discovers entry points, as the process's host."""
    with use_host(PluginHost(blocked=set())) as fresh:
        yield fresh


# Tasks for these tests. Defined here, they travel to the children by value (cloudpickle).


@task
def getpid() -> int:
    return os.getpid()


@task
def exit_hard(code: int) -> None:
    os._exit(code)


@task
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task
def chatty(n: int) -> int:
    for i in range(n):
        print(f"line {i} that must not reach the result channel")
    return n


def _final(run: Any) -> State[Any]:
    state = run.wait(BOUND)
    assert state is not None, "the run did not end within the bound"
    return state  # type: ignore[no-any-return]


class TestDiscovery:
    def test_plugin_host_lists_it_with_its_distribution(self, host: PluginHost) -> None:
        """A fresh plugin host finds `subprocess` through the entry point of conveyor-subprocess."""
        from conveyor_subprocess import SubprocessRunner

        entry = host.runner("subprocess")
        assert entry is not None, host.problems()
        assert entry.runner_class is SubprocessRunner
        assert (entry.distribution, entry.version, entry.plugin) == (
            "conveyor-subprocess",
            VERSION,
            "subprocess",
        )
        assert {"sequential", "concurrent", "subprocess"} <= set(host.registry.names())
        assert [p for p in host.problems() if p.distribution == "conveyor-subprocess"] == []

    def test_cli_lists_it(self, installed: list[str], tmp_path: Path) -> None:
        """`conveyor runners --json` in a new interpreter lists `subprocess` and its capabilities."""
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", "runners", "--json"],
            capture_output=True,
            text=True,
            env=_subprocess_env(installed),
            cwd=tmp_path,
            timeout=BOUND,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        listed = {r["name"]: r for r in json.loads(done.stdout)["runners"]}
        mine = listed["subprocess"]
        assert (mine["distribution"], mine["version"]) == ("conveyor-subprocess", VERSION)
        assert mine["class"] == "conveyor_subprocess.runner.SubprocessRunner"
        assert mine["concurrency"] == "parallel"
        assert mine["capabilities"] == {
            "hard_timeouts": True,
            "cancel_running": True,
            "native_futures": False,
            "resources": False,
            "isolation": True,
        }


class TestSelection:
    def test_selected_by_name_from_the_environment(
        self, host: PluginHost, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_RUNNER=subprocess moves an unchanged flow onto it: each run in its own process."""
        monkeypatch.setenv("CONVEYOR_RUNNER", "subprocess")

        @flow(runner="concurrent")  # the environment overrides the decorator
        def pids() -> list[int]:
            return [f.result(timeout=BOUND) for f in [getpid.submit() for _ in range(3)]]

        found = pids()
        assert os.getpid() not in found
        assert len(set(found)) == 3  # a fresh process per attempt

    def test_options_from_the_environment(
        self, host: PluginHost, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Its options come from CONVEYOR_RUNNER_OPTIONS, and a bad value names the option."""
        from conveyor.config import resolve_runner
        from conveyor_subprocess import SubprocessRunner

        monkeypatch.setenv("CONVEYOR_RUNNER", "subprocess")
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", '{"max_workers": 3}')
        assert resolve_runner(host=host) == SubprocessRunner(max_workers=3)
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", '{"max_workers": 0}')
        with pytest.raises(ConfigError, match="max_workers=0"):
            resolve_runner(host=host)
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", '{"python": 5}')
        with pytest.raises(
            ConfigError,
            match=r"`python=5` has the wrong type; it takes str \| None \(from CONVEYOR_RUNNER_OPTIONS\)",
        ):
            resolve_runner(host=host)
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", '{"workers": 3}')
        with pytest.raises(ConfigError, match=r"'workers'.*max_workers, python"):
            resolve_runner(host=host)


class TestIsolation:
    @pytest.fixture
    def runner(self, installed: list[str]) -> Runner:
        from conveyor_subprocess import SubprocessRunner

        return SubprocessRunner()

    def test_os_exit_is_a_crash_and_the_flow_carries_on(self, runner: Runner) -> None:
        """A task that calls os._exit ends CRASHED worker-died; the flow and the runner go on."""

        @flow(runner=runner)
        def exiting() -> tuple[State[Any], int]:
            state = _final(exit_hard.submit(1))
            return state, t.add.submit(2, 3).result(timeout=BOUND)

        state, after = exiting()
        assert state.type is StateType.CRASHED
        assert state.reason == "worker-died"
        assert "exited with code 1" in state.message
        assert after == 5

    def test_killed_child_is_a_crash(self, runner: Runner) -> None:
        """A child killed by a signal ends its run CRASHED worker-died, naming the signal."""

        @flow(runner=runner)
        def killed() -> State[Any]:
            return _final(kill_self.submit())

        state = killed()
        assert state.type is StateType.CRASHED
        assert state.reason == "worker-died"
        assert "SIGKILL" in state.message

    def test_prints_do_not_corrupt_the_result(self, runner: Runner) -> None:
        """What a task prints goes to stderr; its result still arrives intact."""

        @flow(runner=runner)
        def printing() -> int:
            return chatty.submit(200).result(timeout=BOUND)

        assert printing() == 200

    def test_cancelled_while_queued_never_starts(
        self, installed: list[str], tmp_path: Path
    ) -> None:
        """With every worker busy, a cancelled queued run ends CANCELLED and its body never runs."""
        from conveyor_subprocess import SubprocessRunner

        gate, marker = str(tmp_path / "gate"), str(tmp_path / "ran")

        @flow(runner=SubprocessRunner(max_workers=1))
        def queued() -> tuple[bool, State[Any]]:
            blocker = t.wait_for_file.submit(gate, BOUND)  # holds the only worker
            waiting = t.mark.submit("x", marker)  # no dependency: queued in the runner
            after = t.add.submit(1, 1)  # queued behind it, in order
            cancelled = waiting.cancel()
            Path(gate).touch()
            assert blocker.result(timeout=BOUND) is True
            assert after.result(timeout=BOUND) == 2  # so `waiting` had its turn, if any
            return cancelled, _final(waiting)

        cancelled, state = queued()
        assert cancelled is True
        assert state.type is StateType.CANCELLED
        assert not Path(marker).exists()

    def test_cancel_kills_the_running_child(self, runner: Runner, tmp_path: Path) -> None:
        """cancel() on a running run kills its process at once, while the flow still runs."""
        beats = str(tmp_path / "beats")

        @flow(runner=runner)
        def cancelling() -> tuple[State[Any], list[psutil.Process]]:
            run = t.heartbeat.submit(beats, 2000, 0.05)
            assert wait_until(lambda: t.count(beats) >= 1)
            children = _my_children()
            assert run.cancel() is True
            _, alive = psutil.wait_procs(children, timeout=BOUND)  # before the runner stops
            return _final(run), alive

        state, alive = cancelling()
        assert alive == []
        assert (state.type, state.reason) == (StateType.CANCELLED, "stopped")

    def test_timeout_kills_the_child(self, runner: Runner, tmp_path: Path) -> None:
        """A run past its timeout is TimedOut and its process is gone, while the flow still runs."""
        beats = str(tmp_path / "beats")
        beating = t.heartbeat.with_options(timeout_seconds=1.0)

        @flow(runner=runner)
        def timing_out() -> tuple[State[Any], list[psutil.Process]]:
            run = beating.submit(beats, 2000, 0.05)
            assert wait_until(lambda: t.count(beats) >= 1)
            children = _my_children()
            state = _final(run)
            _, alive = psutil.wait_procs(children, timeout=BOUND)  # before the runner stops
            return state, alive

        state, alive = timing_out()
        assert alive == []
        assert (state.name, state.reason) == ("TimedOut", "stopped")

    def test_children_do_not_outlive_the_flow(self, runner: Runner, tmp_path: Path) -> None:
        """A flow whose body raises while a child runs leaves no child process behind."""
        beats = str(tmp_path / "beats")
        children: list[psutil.Process] = []

        @flow(runner=runner)
        def abandoning() -> None:
            t.heartbeat.submit(beats, 2000, 0.05)
            assert wait_until(lambda: t.count(beats) >= 1)
            children.extend(_my_children())
            raise RuntimeError("the body gives up")

        state = abandoning(return_state=True)
        assert state.is_failed()
        assert children, "the heartbeat ran in no child process"
        _, alive = psutil.wait_procs(children, timeout=BOUND)
        assert alive == []


def _my_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "conveyor_subprocess._child" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


class TestSubprocessConformance(RunnerConformance):
    """The conformance suite, including hard timeouts and cancelling running work."""

    @pytest.fixture
    def runner(self, installed: list[str]) -> Runner:
        from conveyor_subprocess import SubprocessRunner

        return SubprocessRunner()


def guide_files(markdown: Path) -> dict[str, str]:
    """The code blocks of a guide that start with ``# file: NAME``, by NAME."""
    text = markdown.read_text(encoding="utf-8")
    blocks = re.findall(r"^```\w*\n(# file: (\S+)\n.*?)^```", text, flags=re.S | re.M)
    return {name: body for body, name in blocks}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's plugin written out as a project folder, installed as its own site dir."""
    folder = tmp_path_factory.mktemp("conveyor-pool")
    files = guide_files(GUIDE)
    assert {"pyproject.toml", "conveyor_pool.py", "test_conveyor_pool.py"} <= set(files)
    for name, body in files.items():
        (folder / name).write_text(body, encoding="utf-8")
    pyproject = tomllib.loads(files["pyproject.toml"])
    _write_dist_info(folder, pyproject["project"])
    return folder


class TestWritingARunnerGuide:
    """The guide's code is a complete plugin: it installs, is listed, and passes conformance."""

    def test_guide_plugin_is_listed(self, project: Path) -> None:
        """Installed, the guide's plugin appears in `conveyor runners` from conveyor-pool."""
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", "runners", "--json"],
            capture_output=True,
            text=True,
            env=_subprocess_env([str(project)]),
            cwd=project,
            timeout=BOUND,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        listed = json.loads(done.stdout)
        pool = {r["name"]: r for r in listed["runners"]}["pool"]
        assert (pool["distribution"], pool["version"]) == ("conveyor-pool", "0.1.0")
        assert listed["problems"] == []

    def test_guide_conformance_passes(self, project: Path) -> None:
        """The guide's test file, run by pytest as its author would, passes the suite."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-W",
                "error",
                "-p",
                "no:cacheprovider",
                "test_conveyor_pool.py",
            ],
            capture_output=True,
            text=True,
            env=_subprocess_env([str(project)]),
            cwd=project,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert re.search(r"\b\d+ passed", done.stdout)
        assert " failed" not in done.stdout
