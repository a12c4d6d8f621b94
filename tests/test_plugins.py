"""The plugin host: entry-point discovery, broken/blocked/conflicting plugins, hooks."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigError, FlowRunInfo, PluginError, flow, hookimpl
from conveyor.config import build_runner
from conveyor.plugins import PluginHost, RunnerRegistry, use_host
from conveyor.plugins.hookspecs import hookspec
from conveyor.runners import ConcurrentRunner, SequentialRunner
from conveyor.testing import _tasks as shared
from tests._support import StateRecorder, make_distribution

RUNNER_MODULE = """
import attrs
from conveyor import hookimpl
from conveyor.runners import SequentialRunner

@attrs.define(kw_only=True)
class {cls}(SequentialRunner):
    name = "{name}"
    greeting: str = "hi"

@hookimpl
def conveyor_register_runners(registry):
    registry.add({cls})
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path to install fake distributions into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("CONVEYOR_BLOCK_PLUGINS", raising=False)
    return folder


def _install(
    site: Path, dist: str, ep: str, module: str, source: str, version: str = "1.2.3"
) -> None:
    make_distribution(site, dist, version, {ep: module}, {module: source})


class TestBuiltins:
    def test_builtin_runners_come_through_the_same_hook(self) -> None:
        """sequential and concurrent are registered by the built-in plugin's hook."""
        host = PluginHost(entry_points=False)
        entries = {e.name: e for e in host.registry.entries()}
        assert entries["sequential"].runner_class is SequentialRunner
        assert entries["concurrent"].runner_class is ConcurrentRunner
        assert entries["concurrent"].plugin == "conveyor"
        assert entries["concurrent"].distribution == "conveyor"
        assert "conveyor" in host.plugin_names()


class TestDiscovery:
    def test_entry_point_plugin_is_found_with_its_distribution(self, site: Path) -> None:
        """An installed plugin's runner is registered with its distribution and version."""
        _install(
            site,
            "conveyor-fake",
            "fake",
            "fake_plugin",
            RUNNER_MODULE.format(cls="Fake", name="fake"),
        )
        host = PluginHost()
        entry = host.runner("fake")
        assert entry is not None
        assert (entry.distribution, entry.version, entry.plugin) == (
            "conveyor-fake",
            "1.2.3",
            "fake",
        )
        assert build_runner("fake", {"greeting": "yo"}, host=host).greeting == "yo"  # type: ignore[attr-defined]

    def test_plugin_that_fails_to_import_is_reported_and_skipped(self, site: Path) -> None:
        """A plugin that cannot be imported is reported as broken; the others still work."""
        _install(
            site,
            "conveyor-bad",
            "bad",
            "bad_plugin",
            "raise ImportError('missing dependency xyz')\n",
        )
        _install(
            site,
            "conveyor-fake",
            "fake",
            "fake_plugin",
            RUNNER_MODULE.format(cls="Fake", name="fake"),
        )
        host = PluginHost()
        assert host.runner("fake") is not None
        problems = {p.plugin: p for p in host.problems()}
        assert problems["bad"].status == "broken"
        assert problems["bad"].distribution == "conveyor-bad"
        assert "missing dependency xyz" in problems["bad"].error

    def test_plugin_whose_hook_raises_is_reported_and_skipped(self, site: Path) -> None:
        """A plugin that raises in conveyor_register_runners is broken; the rest load."""
        source = "from conveyor import hookimpl\n@hookimpl\ndef conveyor_register_runners(registry):\n    raise RuntimeError('hook exploded')\n"
        _install(site, "conveyor-raiser", "raiser", "raiser_plugin", source)
        host = PluginHost()
        assert "concurrent" in host.registry.names()
        problem = next(p for p in host.problems() if p.plugin == "raiser")
        assert "conveyor_register_runners failed: RuntimeError: hook exploded" in problem.error

    def test_broken_plugin_keeps_none_of_its_runners(self, site: Path) -> None:
        """A plugin that registered a runner and then raised is broken, without that runner."""
        source = RUNNER_MODULE.format(cls="Half", name="half").replace(
            "registry.add(Half)", "registry.add(Half)\n    raise RuntimeError('second step failed')"
        )
        _install(site, "conveyor-half", "half", "half_plugin", source, "0.9")
        _install(
            site,
            "conveyor-fake",
            "fake",
            "fake_plugin",
            RUNNER_MODULE.format(cls="Fake", name="fake"),
        )
        host = PluginHost()
        assert host.runner("half") is None
        assert host.runner("fake") is not None
        problem = next(p for p in host.problems() if p.plugin == "half")
        assert (problem.distribution, problem.version, problem.status) == (
            "conveyor-half",
            "0.9",
            "broken",
        )
        assert "RuntimeError: second step failed" in problem.error
        assert "half" not in host.plugin_names()

    def test_misspelt_hook_is_caught(self, site: Path) -> None:
        """A conveyor_* hook implementation with no matching spec is refused (check_pending)."""
        source = "from conveyor import hookimpl\n@hookimpl\ndef conveyor_register_runner(registry):\n    pass\n"
        _install(site, "conveyor-typo", "typo", "typo_plugin", source)
        host = PluginHost()
        problem = next(p for p in host.problems() if p.plugin == "typo")
        assert problem.status == "broken"
        assert "conveyor_register_runner" in problem.error
        assert "typo" not in host.plugin_names()

    def test_two_plugins_claiming_one_name_name_both(self, site: Path) -> None:
        """Two distributions registering one name make it an error naming both; others work."""
        _install(
            site, "conveyor-one", "one", "one_plugin", RUNNER_MODULE.format(cls="One", name="twin")
        )
        _install(
            site,
            "conveyor-two",
            "two",
            "two_plugin",
            RUNNER_MODULE.format(cls="Two", name="twin"),
            "2.0",
        )
        host = PluginHost()
        with pytest.raises(PluginError) as info:
            host.runner("twin")
        assert "conveyor-one 1.2.3" in str(info.value) and "conveyor-two 2.0" in str(info.value)
        assert host.runner("concurrent") is not None
        assert set(host.registry.conflicts()) == {"twin"}

    def test_blocked_plugin_is_not_loaded(
        self, site: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_BLOCK_PLUGINS keeps a plugin from loading, and reports it blocked."""
        _install(
            site,
            "conveyor-fake",
            "fake",
            "fake_plugin",
            RUNNER_MODULE.format(cls="Fake", name="fake"),
        )
        monkeypatch.setenv("CONVEYOR_BLOCK_PLUGINS", "other, fake")
        host = PluginHost()
        assert host.runner("fake") is None
        problem = next(p for p in host.problems() if p.plugin == "fake")
        assert problem.status == "blocked"

    def test_registering_a_non_runner_is_an_error(self) -> None:
        """registry.add refuses something that is not a Runner subclass."""
        with pytest.raises(TypeError, match="not a Runner subclass"):
            RunnerRegistry().add(dict)  # type: ignore[arg-type]


class TestHooks:
    def test_register_runners_hook(self) -> None:
        """conveyor_register_runners adds runners that flows select by name."""

        class Plugin:
            @hookimpl
            def conveyor_register_runners(self, registry: RunnerRegistry) -> None:
                registry.add(SequentialRunner, name="inline-test")

        host = PluginHost(entry_points=False, extra_plugins=[("p", Plugin())])
        with use_host(host):

            @flow(runner="inline-test")
            def f() -> int:
                return shared.add.submit(2, 3).result()

            assert f() == 5
        assert host.registry.names() == ["concurrent", "inline-test", "processes", "sequential"]

    def test_task_run_state_changed_hook(self) -> None:
        """conveyor_task_run_state_changed sees every change of every run, in order."""
        recorder = StateRecorder()
        with use_host(PluginHost(entry_points=False, extra_plugins=[("rec", recorder)])):

            @flow(runner="concurrent")
            def f() -> None:
                shared.flaky.with_options(retries=1).submit("/nonexistent/dir/x", 0).wait()

            f()
        assert [(old, new) for _, old, new in recorder.changes] == [
            ("Pending", "Running"),
            ("Running", "Retrying"),
            ("Retrying", "Running"),
            ("Running", "Failed"),
        ]

    def test_flow_run_started_hook(self) -> None:
        """conveyor_flow_run_started fires once per flow run, before the body runs."""
        recorder = StateRecorder()
        seen_in_body: list[list[tuple[str, str]]] = []
        with use_host(PluginHost(entry_points=False, extra_plugins=[("rec", recorder)])):

            @flow(runner="sequential")
            def f() -> None:
                seen_in_body.append(list(recorder.flows))

            f()
        assert [e for _, e in seen_in_body[0]] == ["started"]

    def test_flow_run_finished_hook(self) -> None:
        """conveyor_flow_run_finished fires once per flow run with its final state."""
        recorder = StateRecorder()
        with use_host(PluginHost(entry_points=False, extra_plugins=[("rec", recorder)])):

            @flow(runner="sequential")
            def f() -> None:
                raise ValueError("x")

            f(return_state=True)
        assert [e for _, e in recorder.flows] == ["started", "Failed"]

    def test_observer_errors_do_not_break_runs(self, caplog: pytest.LogCaptureFixture) -> None:
        """An observer hook that raises is logged; the run's outcome is unchanged."""

        class Broken:
            @hookimpl
            def conveyor_task_run_state_changed(self, future: Any, old: Any, new: Any) -> None:
                raise RuntimeError("observer broke")

        with use_host(PluginHost(entry_points=False, extra_plugins=[("b", Broken())])):

            @flow(runner="sequential")
            def f() -> int:
                return shared.add.submit(1, 1).result()

            assert f() == 2
        assert "observer broke" in caplog.text

    def test_hooks_fire_from_worker_threads_safely(self) -> None:
        """Observers get changes made on worker threads; each run becomes final once."""
        recorder = StateRecorder()
        with use_host(PluginHost(entry_points=False, extra_plugins=[("rec", recorder)])):

            @flow(runner=ConcurrentRunner(max_workers=4))
            def f() -> None:
                shared.add.map(range(200), [1] * 200)

            f()
        finals = [name for name, _, new in recorder.changes if new in {"Completed", "Failed"}]
        assert len(finals) == len(set(finals)) == 200
        assert threading.active_count() >= 1


class TestThroughPluggy:
    def test_register_hook_is_called_through_pluggy(self) -> None:
        """A new-style wrapper hookimpl runs: the host calls hooks through pluggy, never raw."""

        class Wrapping:
            @hookimpl(wrapper=True)
            def conveyor_register_runners(self, registry: RunnerRegistry) -> Any:
                registry.add(SequentialRunner, name="wrapped")
                return (yield)

        host = PluginHost(entry_points=False, extra_plugins=[("w", Wrapping())])
        entry = host.runner("wrapped")
        assert entry is not None and entry.plugin == "w"
        assert host.problems() == []

    def test_each_plugin_registers_through_its_own_call(self) -> None:
        """The register hook runs once per plugin, each plugin's runners attributed to it."""
        calls: list[str] = []

        def plugin(label: str) -> object:
            class Registers:
                @hookimpl
                def conveyor_register_runners(self, registry: RunnerRegistry) -> None:
                    calls.append(label)
                    registry.add(SequentialRunner, name=f"from-{label}")

            return Registers()

        host = PluginHost(
            entry_points=False, extra_plugins=[("a", plugin("a")), ("b", plugin("b"))]
        )
        assert [e.plugin for e in host.registry.entries() if e.name.startswith("from-")] == [
            "a",
            "b",
        ]
        assert calls == ["a", "b"]

    def test_flow_hooks_receive_a_frozen_record(self) -> None:
        """The flow-run hooks get a FlowRunInfo naming the run, its flow and its runner."""
        seen: list[FlowRunInfo] = []

        class Records:
            @hookimpl
            def conveyor_flow_run_started(self, flow_run: FlowRunInfo) -> None:
                seen.append(flow_run)

            @hookimpl
            def conveyor_flow_run_finished(self, flow_run: FlowRunInfo, state: Any) -> None:
                seen.append(flow_run)

        with use_host(PluginHost(entry_points=False, extra_plugins=[("r", Records())])):

            @flow(name="recorded", runner="sequential")
            def f() -> None:
                pass

            f()
        assert len(seen) == 2 and seen[0] == seen[1]
        info = seen[0]
        assert isinstance(info, FlowRunInfo)
        assert (info.flow_name, info.runner_name, info.runner.name) == (
            "recorded",
            "sequential",
            "sequential",
        )
        assert info.name == f"recorded-{info.id}"

    def test_unregistering_a_plugin_that_never_loaded_is_harmless(self) -> None:
        """unregister() of a plugin the host refused (or never saw) leaves the host as it was."""
        host = PluginHost(entry_points=False)
        host.unregister(object())
        assert host.plugin_names() == ["conveyor"]


class TestMeta:
    def test_every_hook_has_a_test(self) -> None:
        """Every hookspec has a test named after it in this module (datasette's meta-test)."""
        from conveyor.plugins import hookspecs

        source = Path(__file__).read_text()
        specs = [n for n in dir(hookspecs) if n.startswith("conveyor_")]
        assert len(specs) == 4
        missing = [
            n for n in specs if f"def test_{n.removeprefix('conveyor_')}_hook(" not in source
        ]
        assert missing == []

    def test_every_hook_is_documented_with_its_arguments(self) -> None:
        """The README lists every hook with its exact arguments."""
        import inspect

        from conveyor.plugins import hookspecs

        readme = (Path(__file__).parent.parent / "README.md").read_text()
        for name in dir(hookspecs):
            if not name.startswith("conveyor_"):
                continue
            params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
            assert f"{name}({params})" in readme, f"README does not document {name}({params})"

    def test_hookspecs_are_marked(self) -> None:
        """Every conveyor_* function in hookspecs is a real pluggy hookspec."""
        from conveyor.plugins import hookspecs

        for name in dir(hookspecs):
            if name.startswith("conveyor_"):
                assert hasattr(getattr(hookspecs, name), "conveyor_spec")
        assert hookspec.project_name == "conveyor"


def test_unknown_option_from_a_plugin_runner(site: Path) -> None:
    """Options of a plugin's runner are validated like the built-ins'."""
    _install(
        site, "conveyor-fake", "fake", "fake_plugin", RUNNER_MODULE.format(cls="Fake", name="fake")
    )
    with pytest.raises(ConfigError, match="it takes: greeting"):
        build_runner("fake", {"greting": "x"}, host=PluginHost())
