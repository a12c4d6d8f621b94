"""Choosing a runner by name: precedence, options from files/env/CLI, and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from conveyor import ConfigError, FlowRunInfo, UnknownRunnerError, flow, hookimpl
from conveyor.config import build_runner, cli_overrides, find_config, resolve_runner
from conveyor.plugins import PluginHost, RunnerRegistry, use_host
from conveyor.runners import ConcurrentRunner, SequentialRunner

if TYPE_CHECKING:
    from decimal import Decimal  # only for type checking: not resolvable when options are read


@attrs.define(kw_only=True)
class Typed(SequentialRunner):
    """A runner whose options have resolvable, inherited and unresolvable annotations."""

    name = "typed"
    count: int = 1
    ratio: float | None = None
    names: list[str] = attrs.Factory(list)
    exact: Decimal | None = None


@attrs.define(kw_only=True)
class MoreTyped(Typed):
    """A subclass that inherits Typed's options and adds one."""

    name = "more-typed"
    label: str = ""


class RegistersTyped:
    @hookimpl
    def conveyor_register_runners(self, registry: RunnerRegistry) -> None:
        registry.add(Typed)
        registry.add(MoreTyped)


@pytest.fixture
def host() -> PluginHost:
    return PluginHost(entry_points=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working directory, with no CONVEYOR_* variables."""
    for var in ("CONVEYOR_RUNNER", "CONVEYOR_RUNNER_OPTIONS"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    monkeypatch.chdir(folder / "src")
    return folder


def _pyproject(project: Path, body: str) -> Path:
    path = project / "pyproject.toml"
    path.write_text('[project]\nname = "demo"\n\n' + body)
    return path


class TestPrecedence:
    def test_default_is_concurrent(self, project: Path, host: PluginHost) -> None:
        """With nothing configured, the runner is concurrent."""
        assert resolve_runner(host=host) == ConcurrentRunner()

    def test_full_order(
        self, project: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """call > CLI > env > decorator > file > default, each one overriding the next."""
        _pyproject(project, '[tool.conveyor]\nrunner = "sequential"\n')
        assert resolve_runner(host=host).name == "sequential"  # file
        assert resolve_runner(decorator="concurrent", host=host).name == "concurrent"  # decorator
        monkeypatch.setenv("CONVEYOR_RUNNER", "sequential")
        assert resolve_runner(decorator="concurrent", host=host).name == "sequential"  # env
        with cli_overrides("concurrent"):
            assert resolve_runner(decorator="sequential", host=host).name == "concurrent"  # CLI
            assert resolve_runner(call="sequential", host=host).name == "sequential"  # call

    def test_runner_object_in_code_is_used_as_is(self, project: Path, host: PluginHost) -> None:
        """A runner object passed in code is used unchanged."""
        runner = ConcurrentRunner(max_workers=7)
        assert resolve_runner(decorator=runner, host=host) is runner

    def test_env_moves_a_flow_without_editing_it(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_RUNNER overrides @flow(runner=...) for a real flow call."""
        monkeypatch.setenv("CONVEYOR_RUNNER", "sequential")

        class RunnerNames:
            def __init__(self) -> None:
                self.names: list[str] = []

            @hookimpl
            def conveyor_flow_run_started(self, flow_run: FlowRunInfo) -> None:
                self.names.append(flow_run.runner.name)

        seen = RunnerNames()
        with use_host(PluginHost(entry_points=False, extra_plugins=[("names", seen)])):

            @flow(runner="concurrent")
            def f() -> None:
                pass

            f()
            f.with_options(runner="concurrent")()
        assert seen.names == ["sequential", "concurrent"]


class TestOptions:
    def test_options_from_pyproject(self, project: Path, host: PluginHost) -> None:
        """[tool.conveyor.runners.NAME] gives that runner's options."""
        _pyproject(project, "[tool.conveyor.runners.concurrent]\nmax_workers = 3\n")
        assert resolve_runner(host=host) == ConcurrentRunner(max_workers=3)

    def test_conveyor_toml_wins_in_its_folder(self, project: Path, host: PluginHost) -> None:
        """A conveyor.toml (top-level runner and [runners.NAME]) is used before pyproject.toml."""
        _pyproject(project, '[tool.conveyor]\nrunner = "sequential"\n')
        (project / "conveyor.toml").write_text(
            'runner = "concurrent"\n[runners.concurrent]\nmax_workers = 2\n'
        )
        assert resolve_runner(host=host) == ConcurrentRunner(max_workers=2)

    def test_env_and_cli_override_file_options(
        self, project: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_RUNNER_OPTIONS overrides the file; the CLI overrides both."""
        _pyproject(project, "[tool.conveyor.runners.concurrent]\nmax_workers = 3\n")
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", json.dumps({"max_workers": 5}))
        assert resolve_runner(host=host) == ConcurrentRunner(max_workers=5)
        with cli_overrides(None, {"max_workers": 6}):
            assert resolve_runner(host=host) == ConcurrentRunner(max_workers=6)

    def test_options_follow_the_chosen_name(self, project: Path, host: PluginHost) -> None:
        """Options of another runner's table are not applied."""
        _pyproject(project, "[tool.conveyor.runners.concurrent]\nmax_workers = 3\n")
        assert resolve_runner(decorator="sequential", host=host) == SequentialRunner()

    def test_pyproject_without_tool_conveyor_is_skipped(
        self, project: Path, tmp_path: Path
    ) -> None:
        """A pyproject.toml without [tool.conveyor] does not stop the search upwards."""
        _pyproject(project, "")
        (tmp_path / "conveyor.toml").write_text('runner = "sequential"\n')
        found = find_config()
        assert found.path == tmp_path / "conveyor.toml" and found.runner == "sequential"


class TestErrors:
    def test_unknown_name_lists_and_suggests(self, project: Path, host: PluginHost) -> None:
        """An unknown name lists the runners and suggests the closest."""
        with pytest.raises(UnknownRunnerError) as info:
            resolve_runner(call="concurent", host=host)
        msg = str(info.value)
        assert "Did you mean 'concurrent'?" in msg
        assert "Available runners: concurrent, processes, sequential" in msg

    @pytest.mark.parametrize("name", ["dask", "ray"])
    def test_first_party_not_installed_says_how(
        self, project: Path, host: PluginHost, name: str
    ) -> None:
        """A first-party runner that is not installed names the pip command."""
        with pytest.raises(UnknownRunnerError, match=rf'pip install "conveyor\[{name}\]"'):
            resolve_runner(call=name, host=host)

    def test_unknown_option(self, project: Path, host: PluginHost) -> None:
        """An option the runner does not take names it, the runner and the accepted options."""
        path = _pyproject(project, "[tool.conveyor.runners.concurrent]\nworkers = 3\n")
        with pytest.raises(ConfigError) as info:
            resolve_runner(host=host)
        msg = str(info.value)
        assert "'workers'" in msg and "'concurrent'" in msg and "it takes: max_workers" in msg
        assert str(path) in msg

    def test_wrong_type(self, project: Path, host: PluginHost) -> None:
        """A value of the wrong type names the option, the runner and the type."""
        _pyproject(project, '[tool.conveyor.runners.concurrent]\nmax_workers = "four"\n')
        with pytest.raises(ConfigError, match=r"`max_workers='four'`.*wrong type; it takes int"):
            resolve_runner(host=host)

    @pytest.mark.parametrize("name", ["typed", "more-typed"])
    def test_option_types_come_from_resolved_annotations(self, name: str) -> None:
        """Annotations are resolved where declared; one that cannot be resolved goes unchecked."""
        host = PluginHost(entry_points=False, extra_plugins=[("typed", RegistersTyped())])
        good = {"count": 2, "ratio": 3, "names": ["a"], "exact": "1.5"}
        assert build_runner(name, good, host=host).count == 2  # type: ignore[attr-defined]
        for option, value, expected in [
            ("count", True, "int"),
            ("ratio", "x", "float | None"),
            ("names", "a", "list[str]"),
        ]:
            message = rf"`{option}={value!r}`.*it takes {re.escape(expected)}\."
            with pytest.raises(ConfigError, match=message):
                build_runner(name, {option: value}, host=host)
        if name == "more-typed":
            with pytest.raises(ConfigError, match="`label=3` has the wrong type; it takes str"):
                build_runner(name, {"label": 3}, host=host)

    def test_bad_value_is_rejected_by_the_runner(self, project: Path, host: PluginHost) -> None:
        """A value of the right type but invalid is rejected with the runner's message."""
        _pyproject(project, "[tool.conveyor.runners.concurrent]\nmax_workers = 0\n")
        with pytest.raises(ConfigError, match="max_workers=0"):
            resolve_runner(host=host)

    @pytest.mark.parametrize("filename", ["pyproject.toml", "conveyor.toml"])
    def test_malformed_file_names_file_and_line(
        self, project: Path, host: PluginHost, filename: str
    ) -> None:
        """A malformed TOML file is reported with its path and line."""
        path = project / filename
        path.write_text(
            '[tool.conveyor]\nrunner = "dask"\nbroken = = 1\n'
            if filename == "pyproject.toml"
            else 'runner = "x"\nbroken = = 1\n'
        )
        line = 3 if filename == "pyproject.toml" else 2
        with pytest.raises(ConfigError) as info:
            resolve_runner(host=host)
        assert str(path) in str(info.value) and f"line {line}" in str(info.value)

    def test_runner_must_be_a_string(self, project: Path, host: PluginHost) -> None:
        """`runner` in a file must be a name."""
        _pyproject(project, "[tool.conveyor]\nrunner = 3\n")
        with pytest.raises(ConfigError, match="must be a runner name"):
            resolve_runner(host=host)

    def test_bad_env_options(
        self, project: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_RUNNER_OPTIONS must be a JSON object."""
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", "max_workers=3")
        with pytest.raises(ConfigError, match="not valid JSON"):
            resolve_runner(host=host)
        monkeypatch.setenv("CONVEYOR_RUNNER_OPTIONS", "[1]")
        with pytest.raises(ConfigError, match="not a JSON object"):
            resolve_runner(host=host)

    def test_errors_come_before_any_runner_starts(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A config error is raised at the flow call, before the body runs."""
        monkeypatch.setenv("CONVEYOR_RUNNER", "nope")
        ran: list[Any] = []

        @flow
        def f() -> None:
            ran.append(1)

        with pytest.raises(UnknownRunnerError):
            f()
        assert ran == []
