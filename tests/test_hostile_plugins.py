"""
Hostile plugins, observers and config: whatever they raise or contain, conveyor reports it and
goes on, and every run still ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from conveyor import ConfigError, flow, hookimpl, task
from conveyor.config import find_config, resolve_runner
from conveyor.plugins import PluginHost, use_host
from conveyor.runners import Attempt, ConcurrencyType, ConcurrentRunner, Runner
from conveyor.testing import wait_until
from tests._support import make_distribution

GOOD = """
import attrs
from conveyor import hookimpl
from conveyor.runners import SequentialRunner

@attrs.define(kw_only=True)
class Good(SequentialRunner):
    name = "good"

@hookimpl
def conveyor_register_runners(registry):
    registry.add(Good)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path to install fake distributions into."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("CONVEYOR_BLOCK_PLUGINS", raising=False)
    make_distribution(
        folder, "conveyor-good", "1.0", {"good": "good_plugin"}, {"good_plugin": GOOD}
    )
    return folder


def _install(site: Path, name: str, source: str) -> None:
    make_distribution(
        site, f"conveyor-{name}", "0.1", {name: f"{name}_plugin"}, {f"{name}_plugin": source}
    )


HOSTILE_PLUGINS = {
    "exits-at-import": "import sys\nsys.exit(3)\n",
    "base-at-import": "class Boom(BaseException):\n    pass\nraise Boom('at import')\n",
    "exits-in-hook": (
        "from conveyor import hookimpl\n"
        "@hookimpl\ndef conveyor_register_runners(registry):\n    raise SystemExit(5)\n"
    ),
    "name-is-a-number": GOOD.replace('name = "good"', "name = 5").replace("Good", "Five"),
    "concurrency-is-a-string": GOOD.replace(
        'name = "good"', 'name = "stringly"\n    concurrency = "sequential"'
    ).replace("Good", "Stringly"),
}


class TestHostilePlugins:
    @pytest.mark.parametrize("kind", sorted(HOSTILE_PLUGINS))
    def test_a_hostile_plugin_is_reported_and_the_others_load(self, site: Path, kind: str) -> None:
        """A plugin that exits or raises any BaseException at import or in its hook, or that
        registers a runner with bad declarations, is reported broken with its distribution; the
        other plugins' runners still load."""
        _install(site, kind.replace("-", "_"), HOSTILE_PLUGINS[kind])
        host = PluginHost()
        names = host.registry.names()
        assert "good" in names
        (problem,) = [p for p in host.problems() if p.plugin == kind.replace("-", "_")]
        assert problem.status == "broken"
        assert "stringly" not in names

    def test_conveyor_runners_survives_a_plugin_that_exits(self, site: Path) -> None:
        """`conveyor runners` lists the good runners and the broken plugin, exit status 0."""
        _install(site, "exits_at_import", HOSTILE_PLUGINS["exits-at-import"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
        proc = subprocess.run(
            [sys.executable, "-m", "conveyor", "runners"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert "good" in proc.stdout
        assert "exits_at_import" in proc.stdout and "SystemExit" in proc.stdout

    def test_block_list_takes_the_module_or_distribution_name(
        self, site: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_BLOCK_PLUGINS matches names as PEP 503 does: the import package
        `good_plugin`, the distribution `conveyor_good` or `Conveyor-Good` all block it."""
        for spelling in ("good_plugin", "conveyor_good", "Conveyor-Good", " good "):
            monkeypatch.setenv("CONVEYOR_BLOCK_PLUGINS", f"other,{spelling}")
            host = PluginHost()
            assert "good" not in host.registry.names(), spelling
            assert [p.status for p in host.problems()] == ["blocked"], spelling


class Raising:
    """An observer whose hook raises a BaseException on every state change."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    @hookimpl
    def conveyor_task_run_state_changed(self, future: Any, old: Any, new: Any) -> None:
        raise self.error("observer")


@task
def add_one(x: int) -> int:
    return x + 1


class TestHostileObservers:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("runner", ["sequential", "concurrent"])
    @pytest.mark.parametrize("error", [SystemExit, GeneratorExit, KeyboardInterrupt, ValueError])
    def test_an_observer_that_raises_never_breaks_a_run(
        self, runner: str, error: type[BaseException]
    ) -> None:
        """An observer hook raising any exception (even SystemExit or KeyboardInterrupt from its
        own code) is logged; every run completes and the flow returns."""
        host = PluginHost(entry_points=False, extra_plugins=[("raising", Raising(error))])

        @flow(runner=runner)
        def three() -> list[int]:
            return [f.result(timeout=30) for f in add_one.map([1, 2, 3])]

        with use_host(host):
            assert three() == [2, 3, 4]

    @pytest.mark.timeout(60)
    def test_a_done_callback_that_raises_never_breaks_a_run(self) -> None:
        """A done callback raising SystemExit is logged; the run and its dependants finish."""

        @flow(runner="concurrent")
        def chained() -> int:
            first = add_one.submit(1)
            first.add_done_callback(lambda f: sys.exit(1))
            return add_one.submit(first).result(timeout=30)

        assert chained() == 3


class TestHostileConfig:
    def test_runner_name_with_spaces_keeps_its_options(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CONVEYOR_RUNNER='concurrent ' names the `concurrent` runner and its options table."""
        (tmp_path / "conveyor.toml").write_text("[runners.concurrent]\nmax_workers = 3\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("CONVEYOR_RUNNER", "concurrent ")
        runner = resolve_runner(host=PluginHost(entry_points=False))
        assert isinstance(runner, ConcurrentRunner) and runner.max_workers == 3

    def test_a_config_file_that_is_not_utf8_is_one_sentence(self, tmp_path: Path) -> None:
        """A conveyor.toml that is not UTF-8 is a ConfigError naming the file and the fix."""
        (tmp_path / "conveyor.toml").write_bytes(b'runner = "caf\xe9"\n')
        with pytest.raises(ConfigError, match=r"conveyor\.toml is not UTF-8 .*save it as UTF-8"):
            find_config(tmp_path)

    @pytest.mark.parametrize("amount", [float("nan"), float("inf"), -1])
    def test_resource_amounts_must_be_finite(self, amount: float) -> None:
        """A resource request of NaN, infinity or a negative number is refused at definition."""
        with pytest.raises(ConfigError, match="give a finite number of 0 or more"):
            task(resources={"GPU": amount})(add_one.fn)


HELD: list[Any] = []


@attrs.define(kw_only=True, eq=False)
class Silent(Runner):
    """A runner that takes attempts and never says a word about them."""

    name = "silent"
    concurrency = ConcurrencyType.CONCURRENT

    def execute(self, attempt: Attempt) -> None:
        HELD.append(attempt)


class TestSilentRunner:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    def test_a_runner_that_never_reports_gets_a_word(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, is_async: bool
    ) -> None:
        """A flow waiting on runs its runner never reports warns after the configured silence,
        naming the runs; once the runner reports, the flow finishes."""
        monkeypatch.setenv("CONVEYOR_STALL_WARNING_SECONDS", "0.2")
        caplog.set_level("WARNING", logger="conveyor")
        HELD.clear()

        def report_once_warned() -> None:
            wait_until(lambda: "no task run changed state" in caplog.text, 30)
            for attempt in list(HELD):
                attempt.succeed(2)

        @flow(runner=Silent())
        def stalls() -> None:
            add_one.submit(1)

        @flow(runner=Silent())
        async def stalls_async() -> None:
            add_one.submit(1)

        reporter = threading.Thread(target=report_once_warned, daemon=True)
        reporter.start()
        if is_async:
            import anyio

            anyio.run(stalls_async)
        else:
            stalls()
        reporter.join(30)
        assert "still waiting for 1 run(s): add_one-1 (Pending)" in caplog.text


class TestSlowPlugin:
    @pytest.mark.timeout(60)
    def test_a_slow_plugin_import_is_named_while_it_goes_on(
        self, site: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plugin whose import takes longer than the bound is named in a warning while the
        import still runs; once it finishes, its runners load."""
        from conveyor.plugins import manager

        gate = site / "gate"
        source = (
            "import os, time\n"
            f"deadline = time.monotonic() + 30\n"
            f"while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n" + GOOD.replace("Good", "Slow").replace('"good"', '"slow"')
        )
        _install(site, "slow", source)
        monkeypatch.setattr(manager, "SLOW_IMPORT_SECONDS", 0.2)
        caplog.set_level("WARNING", logger="conveyor.plugins")

        def open_gate_once_warned() -> None:
            wait_until(lambda: "takes more than" in caplog.text, 30)
            gate.touch()

        opener = threading.Thread(target=open_gate_once_warned, daemon=True)
        opener.start()
        names = PluginHost().registry.names()
        opener.join(30)
        assert "Importing conveyor plugin 'slow'" in caplog.text
        assert "slow" in names
