"""The conveyor-dask distribution: entry point, light import, options and config."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import ConfigError
from conveyor.config import build_runner
from conveyor.plugins.manager import PluginHost
from conveyor_dask import DaskRunner


class TestDistribution:
    def test_entry_point_registers_dask(self) -> None:
        """A fresh plugin host finds `dask` through the entry point of conveyor-dask."""
        host = PluginHost()
        entry = host.runner("dask")
        assert entry is not None
        assert entry.runner_class is DaskRunner
        assert entry.distribution == "conveyor-dask"
        assert entry.version != "unknown"

    def test_import_and_discovery_stay_light(self) -> None:
        """Importing conveyor_dask and listing runners imports neither distributed nor dask."""
        code = (
            "import sys, json, conveyor_dask\n"
            "from conveyor.plugins.manager import PluginHost\n"
            "PluginHost().runner('dask')\n"
            "print(json.dumps([m for m in ('distributed', 'dask') if m in sys.modules]))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert json.loads(out.stdout.strip().splitlines()[-1]) == []

    def test_cli_lists_dask_with_its_distribution(self) -> None:
        """`conveyor runners` shows dask with conveyor-dask and its version."""
        import conveyor_dask

        out = subprocess.run(
            [sys.executable, "-m", "conveyor", "runners"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        line = next(ln for ln in out.stdout.splitlines() if ln.split()[:1] == ["dask"])
        assert "conveyor-dask" in line
        assert conveyor_dask.__version__ in line

    def test_all_is_complete(self) -> None:
        """__all__ lists exactly the public names."""
        import conveyor_dask

        public = {n for n in dir(conveyor_dask) if not n.startswith("_")} - {
            "plugin",
            "runner",
            "cluster",
            "annotations",
        }
        assert set(conveyor_dask.__all__) - {"__version__"} == public


class TestOptions:
    def test_defaults_and_pickling(self) -> None:
        """An unstarted runner is plain config: it pickles and compares by options."""
        r = DaskRunner(cluster_kwargs={"n_workers": 1}, connect_timeout=3)
        again = pickle.loads(pickle.dumps(r))
        assert again == r
        assert again.options()["cluster_kwargs"] == {"n_workers": 1}
        assert r.client is None and r.cluster is None

    def test_options_from_config_are_type_checked(self) -> None:
        """Options given by name (as in pyproject.toml) are validated before anything starts."""
        host = PluginHost()
        r = build_runner("dask", {"address": "tcp://127.0.0.1:1", "connect_timeout": 2}, host=host)
        assert isinstance(r, DaskRunner) and r.connect_timeout == 2
        with pytest.raises(ConfigError, match="connect_timeout"):
            build_runner("dask", {"connect_timeout": "soon"}, host=host)
        with pytest.raises(ConfigError, match="adress"):
            build_runner("dask", {"adress": "x"}, host=host)

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"connect_timeout": 0}, "connect_timeout"),
            ({"cluster_class": "nodots"}, "cluster_class"),
            ({"address": "tcp://h:1", "cluster_class": "a.B"}, "not both"),
            ({"address": "tcp://h:1", "adapt_kwargs": {"maximum": 2}}, "adapt_kwargs"),
            ({"client_kwargs": [1]}, "client_kwargs"),
        ],
    )
    def test_bad_options_raise_config_error(self, options: dict, match: str) -> None:
        """Each invalid option gives a ConfigError naming it."""
        with pytest.raises(ConfigError, match=match):
            DaskRunner(**options)

    def test_unimportable_cluster_class(self) -> None:
        """A cluster_class that cannot be imported is a ConfigError at start."""
        with pytest.raises(ConfigError, match="no_such_module"):
            DaskRunner(cluster_class="no_such_module.Cluster").start()
