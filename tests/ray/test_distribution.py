"""conveyor-ray as a distribution: entry point, light import, typed, picklable configuration."""

from __future__ import annotations

import pickle
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip("conveyor_ray")

import conveyor_ray
from conveyor import ConfigError
from conveyor.config import build_runner
from conveyor.plugins.manager import PluginHost
from conveyor_ray import RayRunner, ray_options_for


class TestDistribution:
    def test_entry_point_registers_ray_with_its_distribution(self) -> None:
        """The `ray` entry point in group `conveyor` gives the runner, with dist and version."""
        entry = PluginHost().runner("ray")
        assert entry is not None
        assert entry.runner_class is RayRunner
        assert entry.distribution == "conveyor-ray"
        assert entry.version == metadata.version("conveyor-ray") == conveyor_ray.__version__
        eps = [ep for ep in metadata.entry_points(group="conveyor") if ep.name == "ray"]
        assert [ep.value for ep in eps] == ["conveyor_ray.plugin"]

    def test_import_and_discovery_do_not_import_ray(self) -> None:
        """Importing conveyor_ray and loading every plugin never imports ray."""
        code = (
            "import sys, conveyor_ray\n"
            "from conveyor.plugins.manager import PluginHost\n"
            "PluginHost().registry.names()\n"
            "print('ray' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "False", out.stderr

    def test_typed_and_exports(self) -> None:
        """The package ships py.typed and its __all__ lists exactly what it exports."""
        assert (Path(conveyor_ray.__file__).parent / "py.typed").is_file()
        assert sorted(conveyor_ray.__all__) == [
            "RayResult",
            "RayRunner",
            "__version__",
            "ray_options_for",
        ]
        for name in conveyor_ray.__all__:
            assert hasattr(conveyor_ray, name)


class TestOptions:
    def test_runner_pickles_as_configuration(self) -> None:
        """A configured runner pickles and compares equal; it is not started."""
        runner = RayRunner(
            address="127.0.0.1:6379",
            init_kwargs={"namespace": "x"},
            remote_options={"num_cpus": 0.5},
            connect_timeout=3,
        )
        clone = pickle.loads(pickle.dumps(runner))
        assert clone == runner and not clone.started
        assert runner.options()["connect_timeout"] == 3

    def test_options_from_config_are_validated(self) -> None:
        """Options come from config by name, and wrong ones fail before anything starts."""
        host = PluginHost()
        runner = build_runner("ray", {"address": "127.0.0.1:1", "connect_timeout": 2}, host=host)
        assert runner == RayRunner(address="127.0.0.1:1", connect_timeout=2)
        with pytest.raises(ConfigError, match="connect_timeout"):
            build_runner("ray", {"connect_timeout": "soon"}, host=host)
        with pytest.raises(ConfigError, match="adress"):
            build_runner("ray", {"adress": "x"}, host=host)

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"connect_timeout": 0}, "connect_timeout"),
            ({"address": ""}, "address"),
            ({"init_kwargs": {"address": "x"}}, "`address=...`"),
            ({"remote_options": {"max_retries": 3}}, "max_retries"),
            ({"remote_options": {"num_returns": 1}}, "num_returns"),
        ],
    )
    def test_bad_options_are_refused(self, options: dict[str, object], match: str) -> None:
        """Invalid option values raise ConfigError naming the option."""
        with pytest.raises(ConfigError, match=match):
            RayRunner(**options)  # type: ignore[arg-type]

    def test_resource_names_map_to_ray_options(self) -> None:
        """CPU, GPU and memory map to Ray's own options; other names are custom resources."""
        assert ray_options_for({"cpu": 1, "GPU": 0.5, "memory": 10, "fpga": 2}) == {
            "num_cpus": 1,
            "num_gpus": 0.5,
            "memory": 10,
            "resources": {"fpga": 2},
        }
