"""
The CLI's process-tree handling: through psutil, and through the /proc walk it falls back to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psutil  # type: ignore[import-untyped]
import pytest

from conveyor import _signals
from conveyor.testing import wait_until

BOUND = 30.0  # a bound against hangs, not a timing

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="the fallback reads /proc")

# A child that starts one grandchild and waits for its stdin to close.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    grandchild = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                  stdin=subprocess.PIPE)
    sys.stdin.read()
    grandchild.stdin.close()
    grandchild.wait()
    """
)

# Kills its own descendants, one of which ignores SIGTERM; prints what is still alive after.
KILLER = textwrap.dedent(
    """
    import json, signal, subprocess, sys
    mode = sys.argv[1]
    if mode == "no-sigkill":
        del signal.SIGKILL  # a platform without it
    from conveyor import _signals
    if mode != "psutil":
        _signals.psutil = None
    stubborn = "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "print('ready', flush=True); sys.stdin.read()"
    plain = "import sys; print('ready', flush=True); sys.stdin.read()"
    codes = [plain] if mode == "no-sigkill" else [plain, stubborn]
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for code in codes
    ]
    for child in children:
        assert child.stdout.readline() == "ready\\n"
    _signals.kill_descendants(grace=0.5)
    print(json.dumps([child.wait(timeout=30) for child in children]))
    """
)


@pytest.fixture
def family() -> Iterator[tuple[int, int]]:
    """A child process with one grandchild: yields (child PID, grandchild PID)."""
    child = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE)
    try:
        below = psutil.Process(child.pid).children
        grandchildren = wait_until(below, BOUND, what="the grandchild to start")
        yield child.pid, grandchildren[0].pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=BOUND)


class TestDescendants:
    def test_psutil_lists_children_and_grandchildren(self, family: tuple[int, int]) -> None:
        """With psutil, descendants() lists a process's whole tree below it."""
        child, grandchild = family
        assert _signals.psutil is not None
        assert _signals.descendants(child) == [grandchild]
        assert grandchild in _signals.descendants()
        assert child in _signals.descendants()

    @needs_proc
    def test_fallback_walks_proc_to_the_same_tree(
        self, family: tuple[int, int], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without psutil, descendants() reads /proc and finds the same processes."""
        child, grandchild = family
        with_psutil = sorted(_signals.descendants(child))
        monkeypatch.setattr(_signals, "psutil", None)
        assert sorted(_signals.descendants(child)) == with_psutil == [grandchild]
        assert sorted(_signals.proc_descendants(child)) == [grandchild]

    @pytest.mark.parametrize("walk", ["psutil", pytest.param("proc", marks=needs_proc)])
    def test_a_leaf_has_none(
        self, family: tuple[int, int], walk: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A process without children, or one that has exited, has no descendants."""
        _, grandchild = family
        if walk == "proc":
            monkeypatch.setattr(_signals, "psutil", None)
        exited = psutil.Popen([sys.executable, "-c", "pass"])
        exited.wait(timeout=BOUND)
        assert _signals.descendants(grandchild) == []
        assert _signals.descendants(exited.pid) == []


@pytest.mark.parametrize(
    "mode",
    [
        "psutil",
        pytest.param("proc", marks=needs_proc),
        pytest.param("no-sigkill", marks=needs_proc),
    ],
)
def test_kill_descendants_terminates_then_kills(mode: str) -> None:
    """kill_descendants ends every child: SIGTERM first, a kill for one that ignores it."""
    done = subprocess.run(
        [sys.executable, "-c", KILLER, mode],
        capture_output=True,
        text=True,
        timeout=BOUND * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    expected = [-15] if mode == "no-sigkill" else [-15, -9]
    assert codes == expected


def test_exit_codes_are_the_shells() -> None:
    """A process ended by SIGINT exits 130 and by SIGTERM 143, as a shell reports it."""
    assert (_signals.exit_code(2), _signals.exit_code(15)) == (130, 143)
