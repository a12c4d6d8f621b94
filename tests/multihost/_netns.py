"""
A small lab of "hosts" on this machine: network namespaces joined by veth pairs to a bridge
that lives in a "switch" namespace of its own, so the root namespace gets no link, address or
route. Each host has loopback and one address on a private /24; the switch has no uplink, so
no packet leaves the lab.

Names carry this process's pid and a counter (parallel runs do not clash), and :func:`leftovers`
lists the namespaces of this process that still exist (the session leak guard asks it).
Processes are started with ``ip netns exec`` in a new session and ended by pid: those found by
``ip netns pids`` and nothing else.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from conveyor.testing import wait_until

PREFIX = "cvmh"
#: The lab's private subnet; each lab has its own bridge, so labs of parallel runs never meet.
SUBNET = "10.213.0"
_counter = itertools.count()


def own_prefix() -> str:
    """The prefix of the namespaces this process creates."""
    return f"{PREFIX}{os.getpid()}-"


def unavailable() -> str | None:
    """Why network namespaces cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building network namespaces needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def leftovers() -> list[str]:
    """The namespaces created by this process that still exist."""
    if shutil.which("ip") is None:
        return []
    try:
        return [ns for ns in _namespaces() if ns.startswith(own_prefix())]
    except (OSError, subprocess.CalledProcessError):
        return []


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


class Host:
    """One namespace of a :class:`Lab`: its name, its address and the processes started in it."""

    def __init__(self, lab: Lab, label: str, index: int) -> None:
        self.label = label
        self.netns = f"{lab.name}{label}"
        self.address = f"{SUBNET}.{index}"
        self.port = f"p{index}"  # the switch's end of this host's veth pair
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(self, args: Sequence[str], *, env: dict[str, str], log: IO[bytes]) -> Any:
        """Start ``args`` inside this host, in a session of its own."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process running inside this host's namespace."""
        try:
            return [int(p) for p in _ip("netns", "pids", self.netns).split()]
        except RuntimeError:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process in this namespace (a host that crashed)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cut(self) -> None:
        """Take this host's link down (it is unplugged; its processes keep running)."""
        _ip("-n", self.netns, "link", "set", "eth0", "down")

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of every TCP socket listening in this namespace."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "ss", "-ltnH"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        found = []
        for line in out.splitlines():
            local = line.split()[3]
            addr, _, port = local.rpartition(":")
            found.append((addr.strip("[]"), int(port)))
        return found


class Lab:
    """
    A bridge in a switch namespace and ``labels`` hosts plugged into it. Use as a context
    manager: leaving it kills every process in the hosts and deletes every namespace.
    """

    def __init__(self, labels: Sequence[str], workdir: Path) -> None:
        self.name = f"{own_prefix()}{next(_counter)}-"
        self.switch = f"{self.name}sw"
        self.workdir = workdir
        self.hosts = {label: Host(self, label, i + 1) for i, label in enumerate(labels)}
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            _ip("netns", "add", host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
            # Both ends are created inside the lab: the root namespace never sees them.
            _ip(
                "-n",
                self.switch,
                "link",
                "add",
                host.port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            )
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")

    def log(self, name: str) -> IO[bytes]:
        """A log file in the lab's folder, closed with the lab."""
        f = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(f)
        return f

    def close(self) -> None:
        """Kill every process in the hosts, then delete every namespace (links go with them)."""
        for host in self.hosts.values():
            host.kill_all()
        for host in self.hosts.values():
            for proc in host.procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        alive = [pid for h in self.hosts.values() for pid in h.pids()]
        wait_until(lambda: not any(psutil.pid_exists(p) for p in alive), 15, interval=0.05)
        existing = set(_namespaces())
        for netns in [*(h.netns for h in self.hosts.values()), self.switch]:
            if netns in existing:
                _ip("netns", "delete", netns)
        for f in self._logs:
            f.close()

    def remains(self) -> list[str]:
        """What of this lab is still there: namespaces, and processes started in it."""
        found = [ns for ns in _namespaces() if ns.startswith(self.name)]
        for host in self.hosts.values():
            found.extend(f"process {p.pid}" for p in host.procs if p.poll() is None)
        return found

    def tail(self, limit: int = 4000) -> str:
        """The end of every log of the lab, for a failing assertion's message."""
        parts = []
        for f in self._logs:
            f.flush()
            text = Path(f.name).read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- {Path(f.name).name}\n{text[-limit:]}")
        return "\n".join(parts)
