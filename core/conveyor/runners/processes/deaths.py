"""
How a worker process died, in words, and whether the kernel's out-of-memory killer did it.

The kernel log, which names the OOM killer's victims, is not readable by ordinary processes.
What is readable is a count of OOM kills, which the kernel raises *before* it sends the victim
its SIGKILL: the memory cgroup of this process counts them (``oom_kill`` in ``memory.events``
on cgroup v2, in ``memory.oom_control`` on cgroup v1), and ``/proc/vmstat`` counts those of the
whole machine. A worker that died of SIGKILL while that count rose was, as far as anything can
tell from here, killed by the OOM killer; any other SIGKILL (``kill -9``, a supervisor) is a
plain worker death. Two processes of the same cgroup killed at the same moment, one by the OOM
killer and one by hand, cannot be told apart.
"""

from __future__ import annotations

import signal
from pathlib import Path

__all__ = ["OomCounter", "describe_exit"]


def describe_exit(code: int | None) -> str:
    """A worker's end in words: ``was killed by SIGKILL``, ``exited with code 1``."""
    if code is None:
        return "ended"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _cgroup_counter() -> tuple[Path, str] | None:
    """This process's memory cgroup file that counts OOM kills, and its line's key."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    for line in lines:
        number, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if number == "0" and not controllers:  # cgroup v2
            for base in (root, root / "unified"):
                events = base / relative / "memory.events"
                if events.is_file():
                    return events, "oom_kill"
        elif "memory" in controllers.split(","):  # cgroup v1
            control = root / "memory" / relative / "memory.oom_control"
            if control.is_file():
                return control, "oom_kill"
    return None


def _read(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class OomCounter:
    """
    The OOM kills counted where this process lives, so that a SIGKILLed worker can be told
    apart: :meth:`claim` says whether a kill was counted since the last one claimed.
    """

    def __init__(self) -> None:
        found = _cgroup_counter()
        self.source, self._key = found if found is not None else (Path("/proc/vmstat"), "oom_kill")
        self._seen = self.count()

    def count(self) -> int | None:
        """The OOM kills counted so far, or None where nothing counts them."""
        return _read(self.source, self._key)

    def claim(self) -> bool:
        """Whether an OOM kill was counted since the last one claimed (and claim it)."""
        now = self.count()
        if now is None or self._seen is None or now <= self._seen:
            self._seen = now
            return False
        self._seen += 1
        return True
