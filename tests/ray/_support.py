"""
Helpers of the Ray tests: starting and stopping a `ray start --head` cluster on 127.0.0.1, by
PID only, and running a separate driver process against one.

Never `ray stop`: it kills every Ray process on the machine, other people's included.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from conveyor.testing import wait_until

# The repository root: on the PYTHONPATH of the Ray processes the tests start, so that their
# workers import `tests.ray._tasks`. Never `tests/` itself: its `ray` package would shadow Ray.
ROOT = Path(__file__).resolve().parents[2]
RAY_BIN = Path(sys.executable).with_name("ray")


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies, so `ray start --block` cleans up."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of Ray processes the tests start: loopback, no retries, test imports."""
    env = dict(os.environ)
    path = [str(ROOT)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(path),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_AUTO_CONNECT": "0",
            "RAY_task_oom_retries": "0",
        }
    )
    env.pop("RAY_ADDRESS", None)
    env.update(extra or {})
    return env


class HeadNode:
    """A `ray start --head --block` process and everything it spawned."""

    def __init__(self, *, num_cpus: int = 2, resources: dict[str, float] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        args = [
            str(RAY_BIN),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        self.proc = subprocess.Popen(
            args,
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready(60.0)

    def _wait_ready(self, limit: float) -> None:
        up = wait_until(
            lambda: self.proc.poll() is not None or self._raylet_up(), limit, interval=0.2
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with {self.proc.returncode}")
        if up:
            return
        self.stop()
        raise RuntimeError(f"`ray start --head` on port {self.port} was not ready in {limit} s")

    def _raylet_up(self) -> bool:
        names = {p.name() for p in self.processes()}
        if not any("raylet" in n for n in names):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def processes(self) -> list[psutil.Process]:
        """The head process and all its descendants (alive ones)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def listening(self) -> list[tuple[str, int, str]]:
        """(ip, port, process name) of every socket its processes listen on."""
        found = []
        for p in self.processes():
            try:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        found.append((c.laddr.ip, c.laddr.port, p.name()))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def kill(self) -> None:
        """Kill the whole cluster (a lost cluster): its GCS first, then everything else."""
        procs = self.processes()
        procs.sort(key=lambda p: 0 if "gcs" in _name(p) else 1)
        for p in procs:
            try:
                p.kill()  # SIGKILL on POSIX
            except psutil.NoSuchProcess:
                pass

    def kill_raylet(self) -> None:
        """
        Kill only this node's raylet (the GCS answers on), as a crash or the OOM killer would.
        `ray start --block` is frozen first (until :meth:`stop`): it would take the whole node
        down when it sees the raylet go.
        """
        self.proc.send_signal(signal.SIGSTOP)
        raylets = [p for p in self.processes() if _name(p) == "raylet"]
        assert raylets, "the node has no raylet to kill"
        for p in raylets:
            try:
                p.kill()  # SIGKILL on POSIX
            except psutil.NoSuchProcess:
                pass

    def stop(self, grace: float = 10.0) -> None:
        """Stop the cluster this object started: SIGTERM, then SIGKILL what is left."""
        procs = self.processes()
        try:
            self.proc.send_signal(signal.SIGCONT)  # if kill_raylet froze it
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        _gone, alive = psutil.wait_procs(procs, timeout=grace)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def run_driver(
    code: str, *, cwd: Path, timeout: float = 120.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """
    Run ``code`` as a separate driver process (a process talks to one Ray cluster); it prints
    one JSON line starting with ``RESULT `` that this returns.
    """
    script = cwd / "driver.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=worker_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]), returncode=proc.returncode)
    raise AssertionError(
        f"driver printed no RESULT (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.NoSuchProcess:
        return ""
