"""
Suite-wide settings and the leak guard.

The leak guard fails the run if, when the session ends, a process this test process started is
still alive, a non-daemon thread other than the main one is still running, this process
still has a listening socket, or a network namespace it created (tests/multihost) remains.
"""

from __future__ import annotations

import os
import threading
import time

# Ray binds to the outside address unless this is set before it starts.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
# The suite picks its runners explicitly; an operator's choice must not leak in.
os.environ.pop("CONVEYOR_RUNNER", None)
os.environ.pop("CONVEYOR_RUNNER_OPTIONS", None)
os.environ.pop("CONVEYOR_BLOCK_PLUGINS", None)

import psutil
import pytest

from tests.multihost._netns import leftovers as leftover_namespaces

LEAK_GRACE_SECONDS = 20.0


def _leaks() -> list[str]:
    me = psutil.Process()
    found: list[str] = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(f"process {child.pid} {' '.join(child.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            continue
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon or not thread.is_alive():
            continue
        found.append(f"non-daemon thread {thread.name!r}")
    try:
        conns = me.net_connections(kind="inet")
    except (psutil.AccessDenied, AttributeError):
        conns = []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN:
            found.append(f"listening socket {conn.laddr.ip}:{conn.laddr.port}")
    found.extend(f"network namespace {ns}" for ns in leftover_namespaces())
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if the tests left processes, threads or sockets behind."""
    if os.environ.get("CONVEYOR_SKIP_LEAK_CHECK"):
        return
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    leaks = _leaks()
    while leaks and time.monotonic() < deadline:
        time.sleep(0.2)
        leaks = _leaks()
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["", "LEAK GUARD: the tests left these behind:", *(f"  {leak}" for leak in leaks)]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    else:
        print("\n".join(lines))
    # End what we started ourselves, so the leak does not outlive the run either.
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
