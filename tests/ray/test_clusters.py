"""
Starting, joining and losing Ray clusters. Each scenario that needs its own Ray runs as a
separate driver process, because one process talks to one Ray cluster.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_ray")

from conveyor import flow
from conveyor.config import find_config, resolve_runner
from conveyor.plugins.manager import PluginHost
from conveyor.testing import wait_until
from conveyor_ray import RayRunner
from tests.ray import _tasks as rt
from tests.ray._support import HeadNode, run_driver, worker_env

PRELUDE = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import psutil
    from conveyor import flow, CrashedRun, BackendUnavailable
    from conveyor.testing import wait_until
    from conveyor_ray import RayRunner
    from tests.ray import _tasks as rt

    ME = psutil.Process()

    def listening():
        found = []
        for p in [ME, *ME.children(recursive=True)]:
            try:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        found.append([c.laddr.ip, c.laddr.port, p.name()])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    def ray_processes():
        names = []
        for p in ME.children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    names.append(p.name())
            except psutil.NoSuchProcess:
                pass
        return names

    def settle(limit=30.0):
        wait_until(lambda: not ray_processes(), limit, interval=0.2)
        return ray_processes()

    def report(**data):
        print("RESULT " + json.dumps(data), flush=True)
    """
)

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}  # the last is IPv4 loopback, mapped


class TestLocalRay:
    def test_default_local_ray_is_loopback_owned_and_never_restarted(self, tmp_path: Path) -> None:
        """With no address the runner starts a loopback-only local Ray and shuts it down when
        the flow ends; after a ray.shutdown() mid-flow every in-flight run is CRASHED
        (backend-lost) within 30 s, nothing escapes, and no new cluster is started."""
        code = PRELUDE + textwrap.dedent(
            """
            @flow(runner=RayRunner())
            def first():
                fs = rt.add.map(range(4), range(4))
                values = [f.result(timeout=60) for f in fs]
                return values, listening(), ray_processes(), rt.pair.submit(1, 2).wait(60)

            values, sockets, during, kept = first()
            import ray
            after_first = settle()
            try:
                kept.result()
                stale = "no error"
            except CrashedRun as exc:
                stale = exc.reason

            @flow(runner=RayRunner())
            def second():
                runs = rt.slow_ok.map([20.0] * 6)
                time.sleep(1.0)  # let them reach the workers
                started = time.monotonic()
                threading.Thread(target=ray.shutdown).start()
                states = [f.wait(60) for f in runs]
                took = time.monotonic() - started
                late = rt.add.submit(1, 1).wait(60)
                return states, took, late

            try:
                states, took, late = second(return_state=True).result()
                escaped = None
            except BaseException as exc:
                escaped = repr(exc)
                states, took, late = [], 0, None
            report(
                values=values,
                sockets=sockets,
                during=during,
                after_first=after_first,
                stale=stale,
                states=[[s.type.value, s.reason] for s in states],
                took=took,
                late=[late.type.value, late.reason] if late else None,
                initialized=ray.is_initialized(),
                after_second=settle(),
                escaped=escaped,
            )
            """
        )
        out = run_driver(code, cwd=tmp_path, timeout=180)
        assert out["values"] == [0, 2, 4, 6]
        assert out["sockets"], "the driver and its Ray should listen somewhere"
        assert {ip for ip, _port, _name in out["sockets"]} <= LOOPBACK, out["sockets"]
        assert any("raylet" in n for n in out["during"])  # it really started its own Ray
        assert out["after_first"] == []  # ... and stopped all of it
        assert out["stale"] == "backend-lost"
        assert out["escaped"] is None
        assert out["states"] == [["CRASHED", "backend-lost"]] * 6
        assert out["took"] < 30
        assert out["late"] == ["CRASHED", "backend-lost"]
        assert out["initialized"] is False  # no new cluster behind the user's back
        assert out["after_second"] == []
        assert out["returncode"] == 0


class TestJoining:
    def test_join_by_address_from_pyproject(self, head: HeadNode, tmp_path: Path) -> None:
        """`[tool.conveyor.runners.ray] address` joins the running cluster; the driver starts
        no Ray of its own and leaves the cluster running."""
        (tmp_path / "pyproject.toml").write_text(
            f'[tool.conveyor]\nrunner = "ray"\n\n[tool.conveyor.runners.ray]\n'
            f'address = "{head.address}"\nconnect_timeout = 20\n',
            encoding="utf-8",
        )
        code = PRELUDE + textwrap.dedent(
            """
            @flow
            def pipeline():
                from conveyor import current_flow_run
                runner = current_flow_run().runner
                value = rt.add.submit(rt.add.submit(1, 2), 3).result(timeout=60)
                return runner.name, runner.address, value, ray_processes()

            name, address, value, during = pipeline()
            report(name=name, address=address, value=value, during=during)
            """
        )
        out = run_driver(code, cwd=tmp_path)
        assert out["name"] == "ray" and out["address"] == head.address
        assert out["value"] == 6
        assert not any("raylet" in n or "gcs" in n for n in out["during"])
        assert any("raylet" in p.name() for p in head.processes())  # still running

    def test_pyproject_config_in_process(
        self, ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A flow with no runner named picks `ray` and its address from pyproject.toml."""
        (tmp_path / "pyproject.toml").write_text(
            f'[tool.conveyor]\nrunner = "ray"\n\n[tool.conveyor.runners.ray]\n'
            f'address = "{ray_address}"\nremote_options = {{ num_cpus = 1 }}\n',
            encoding="utf-8",
        )
        monkeypatch.chdir(tmp_path)

        runner = resolve_runner(host=PluginHost(), config=find_config())
        assert runner == RayRunner(address=ray_address, remote_options={"num_cpus": 1})

        @flow
        def pipeline() -> int:
            return rt.add.submit(2, 2).result(timeout=60)

        assert pipeline() == 4

    def test_every_ray_process_listens_on_loopback_only(self, head: HeadNode) -> None:
        """Nothing the test cluster started listens beyond 127.0.0.1."""
        sockets = head.listening()
        assert sockets
        assert {ip for ip, _port, _name in sockets} <= LOOPBACK, sockets


class TestUnreachable:
    def test_unreachable_address_fails_within_the_connect_timeout(self, tmp_path: Path) -> None:
        """A closed port, and a port that accepts but never answers like Ray, both raise
        BackendUnavailable within connect_timeout + 2 s, starting nothing."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            code = PRELUDE + textwrap.dedent(
                f"""
                results = []
                for address in ("127.0.0.1:9", "127.0.0.1:{port}"):
                    started = time.monotonic()
                    try:
                        RayRunner(address=address, connect_timeout=3).start()
                        results.append([address, "started", 0, ""])
                    except BackendUnavailable as exc:
                        results.append([address, "unavailable", time.monotonic() - started, str(exc)])
                import ray
                report(results=results, initialized=ray.is_initialized(), procs=ray_processes())
                """
            )
            out = run_driver(code, cwd=tmp_path, timeout=60)
        for address, what, took, message in out["results"]:
            assert what == "unavailable", address
            assert took < 3 + 2, (address, took)
            assert address in message
        assert out["initialized"] is False
        assert not any("raylet" in n or "gcs" in n for n in out["procs"])


def _lose_mid_flow(
    tmp_path: Path, node: HeadNode, kill: Callable[[HeadNode], None]
) -> dict[str, Any]:
    """
    A driver process joins ``node`` and submits 6 runs of 30 s; once they reached the workers,
    ``kill(node)``. Returns the driver's report: the runs' final states, how long after the kill
    the last one ended, the state of a run submitted afterwards, what escaped, its processes.
    """
    killed = tmp_path / "killed"
    submitted = tmp_path / "submitted"
    code = PRELUDE + textwrap.dedent(
        f"""
        @flow(runner=RayRunner(address="{node.address}"))
        def doomed():
            runs = rt.slow_ok.map([30.0] * 6)
            open({str(submitted)!r}, "w").close()
            states = [f.wait(90) for f in runs]
            done = time.time()
            late = rt.add.submit(1, 1).wait(30)
            return states, done, late

        try:
            states, done, late = doomed(return_state=True).result()
            escaped = None
        except BaseException as exc:
            escaped = repr(exc)
            states, done, late = [], 0, None
        killed_at = float(open({str(killed)!r}).read())
        report(
            states=[[s.type.value, s.reason, s.message] for s in states if s],
            took=done - killed_at,
            late=[late.type.value, late.reason] if late else None,
            escaped=escaped,
            procs=ray_processes(),
        )
        """
    )
    script = tmp_path / "driver.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: submitted.exists() or proc.poll() is not None, 60, interval=0.1)
        assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)  # let the runs reach the workers
        kill(node)
        killed.write_text(str(time.time()))
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, stderr[-4000:]
    return dict(json.loads(lines[0][len("RESULT ") :]))


class TestClusterLoss:
    def test_losing_the_cluster_crashes_every_inflight_run(self, tmp_path: Path) -> None:
        """Killing the whole cluster mid-flow makes every in-flight run CRASHED(backend-lost)
        within 10 s; no SystemExit or ValueError reaches the user, no cluster is started."""
        node = HeadNode(num_cpus=2)
        try:
            out = _lose_mid_flow(tmp_path, node, HeadNode.kill)
        finally:
            node.stop()
        assert out["escaped"] is None
        assert len(out["states"]) == 6
        assert {(t, r) for t, r, _m in out["states"]} == {("CRASHED", "backend-lost")}
        assert out["took"] < 10  # a hang guard: it takes about 2 s
        assert out["late"] == ["CRASHED", "backend-lost"]
        assert not any("raylet" in n or "gcs" in n for n in out["procs"])

    def test_losing_the_raylet_crashes_every_inflight_run(self, tmp_path: Path) -> None:
        """Killing only this node's raylet mid-flow (the GCS answers on) makes every in-flight
        run CRASHED(backend-lost) within 10 s, naming the raylet; later submits crash at once."""
        node = HeadNode(num_cpus=2)
        try:
            out = _lose_mid_flow(tmp_path, node, HeadNode.kill_raylet)
        finally:
            node.stop()
        assert out["escaped"] is None
        assert len(out["states"]) == 6
        assert {(t, r) for t, r, _m in out["states"]} == {("CRASHED", "backend-lost")}
        assert any("raylet" in m for _t, _r, m in out["states"]), out["states"]
        assert out["took"] < 10  # a hang guard: it takes about 2 s
        assert out["late"] == ["CRASHED", "backend-lost"]
