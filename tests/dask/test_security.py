"""
Who can reach a cluster the Dask runner starts: only the driver. Its scheduler, workers and
nannies require a temporary TLS certificate that only the driver holds, so another local user's
client is refused (tried for real, as user ``nobody``); its dashboard listens on loopback only;
``tls=False`` turns it off. And ``cluster_class`` names a Dask cluster class or is refused
before anything it names is called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import ConfigError, current_flow_run, flow, task
from conveyor_dask import DaskRunner

# What a second local user tries: a plain client, with no certificate and with one of its own.
# The child imports what it needs as root (the test's Python lives under /root, which user
# nobody cannot read), then drops to nobody for good before it connects.
INTRUDER = """
import json, os, pwd, sys
import importlib, pkgutil
from distributed import Client, Security
import distributed, tornado
for package in (distributed, tornado):  # nobody could not import them later
    for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if ".test" not in mod.name and "cli" not in mod.name:
            try:
                importlib.import_module(mod.name)
            except Exception:
                pass
own = Security.temporary()
nobody = pwd.getpwnam("nobody")
os.setgroups([])
os.setgid(nobody.pw_gid)
os.setuid(nobody.pw_uid)
address = sys.argv[1]
host_port = address.split("://", 1)[1]
tries = {"tcp": ("tcp://" + host_port, None), "tls-own-certificate": (address, own)}
out = {"uid": os.getuid(), "euid": os.geteuid()}
for name, (target, security) in tries.items():
    try:
        with Client(target, security=security, timeout=5, set_as_default=False) as c:
            out[name] = "joined: " + repr(c.run_on_scheduler(os.getuid))
    except BaseException as exc:
        out[name] = "refused: " + type(exc).__name__ + ": " + str(exc)[:300]
print("RESULT " + json.dumps(out), flush=True)
"""


@task
def uid() -> int:
    return os.getuid()


def _client() -> Any:
    """The client of the running flow's Dask runner."""
    run = current_flow_run()
    assert run is not None
    return run.runner.client  # type: ignore[attr-defined]


def _as_nobody(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` (which drops to user nobody itself) in a child; its RESULT line."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("dropping to user nobody needs root")
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        cwd="/",
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    return dict(json.loads(lines[0][len("RESULT ") :]))


class TestTLS:
    def test_another_user_cannot_join_the_cluster_the_runner_starts(self) -> None:
        """The scheduler speaks TLS only; user nobody's clients (plain TCP, and TLS with a
        certificate of its own) are refused, while the flow's own tasks run."""
        runner = DaskRunner(cluster_kwargs={"n_workers": 1})
        seen: dict[str, Any] = {}

        @flow(runner=runner)
        def probe() -> int:
            seen["address"] = _client().scheduler.address
            seen["dashboard"] = _client().dashboard_link
            seen["intruder"] = _as_nobody(INTRUDER, seen["address"])
            return uid.submit().result()

        assert probe() == os.getuid()
        assert seen["address"].startswith("tls://127.0.0.1:"), seen
        intruder = seen["intruder"]
        assert intruder["uid"] == intruder["euid"] != 0, intruder
        # Refused by the connection itself (not, say, an import error in the child).
        refusals = tuple(
            f"refused: {kind}"
            for kind in ("OSError", "TimeoutError", "CommClosedError", "FatalCommClosedError")
        )
        assert intruder["tcp"].startswith(refusals), intruder
        assert intruder["tls-own-certificate"].startswith(refusals), intruder
        assert urlparse(seen["dashboard"]).hostname == "127.0.0.1", seen

    def test_tls_false_lets_any_local_user_in(self) -> None:
        """tls=False: plain TCP on loopback, and user nobody's plain client joins and runs
        code as the driver's user (what the option exposes)."""
        runner = DaskRunner(cluster_kwargs={"n_workers": 1}, tls=False)
        seen: dict[str, Any] = {}

        @flow(runner=runner)
        def probe() -> int:
            seen["address"] = _client().scheduler.address
            seen["intruder"] = _as_nobody(INTRUDER, seen["address"])
            return uid.submit().result()

        assert probe() == os.getuid()
        assert seen["address"].startswith("tcp://127.0.0.1:"), seen
        assert seen["intruder"]["tcp"] == f"joined: {os.getuid()}", seen

    def test_threads_only_cluster_uses_tls_too(self) -> None:
        """processes=False (workers are threads of the driver): still TLS to the scheduler."""
        runner = DaskRunner(cluster_kwargs={"n_workers": 1, "processes": False})
        seen: dict[str, str] = {}

        @flow(runner=runner)
        def probe() -> int:
            seen["address"] = _client().scheduler.address
            return uid.submit().result()

        assert probe() == os.getuid()
        assert seen["address"].startswith("tls://127.0.0.1:"), seen

    def test_tls_must_be_a_bool(self) -> None:
        """A non-boolean tls is one ConfigError naming the option."""
        with pytest.raises(ConfigError, match=r"`tls='no'` is invalid; give true or false"):
            DaskRunner(tls="no")  # type: ignore[arg-type]


class TestClusterClass:
    def test_a_class_that_is_not_a_dask_cluster_is_refused_before_it_is_called(
        self, tmp_path: Path
    ) -> None:
        """cluster_class='subprocess.Popen' with a shell command in cluster_kwargs: one
        ConfigError, and the command never ran."""
        marker = tmp_path / "MARKER"
        runner = DaskRunner(
            cluster_class="subprocess.Popen",
            cluster_kwargs={"args": f"id -un > {marker}", "shell": True},
        )

        @flow(runner=runner)
        def never() -> None:
            raise AssertionError("the flow ran")

        with pytest.raises(ConfigError) as info:
            never()
        message = str(info.value)
        assert message.startswith("DaskRunner: `cluster_class='subprocess.Popen'` is invalid")
        assert "subclass of distributed.deploy.Cluster" in message
        assert not marker.exists()

    def test_a_class_object_that_is_not_a_cluster_is_refused(self) -> None:
        """A class given directly is checked too."""

        @flow(runner=DaskRunner(cluster_class=subprocess.Popen))
        def never() -> None:
            raise AssertionError("the flow ran")

        with pytest.raises(ConfigError, match=r"subclass of distributed\.deploy\.Cluster"):
            never()

    def test_a_real_cluster_subclass_is_accepted(self) -> None:
        """distributed.LocalCluster by dotted name starts, and gets TLS like the default."""
        runner = DaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": 1, "threads_per_worker": 1},
        )
        seen: dict[str, str] = {}

        @flow(runner=runner)
        def probe() -> int:
            seen["address"] = _client().scheduler.address
            return uid.submit().result()

        assert probe() == os.getuid()
        assert seen["address"].startswith("tls://127.0.0.1:"), seen
