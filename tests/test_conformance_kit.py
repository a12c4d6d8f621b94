"""
The conformance kit itself: each deliberately broken runner below fails the suite, with a
message that names the broken promise, within seconds.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "conveyor_subprocess"

LIARS = '''
import os
import subprocess
import sys

import attrs
import pytest

from conveyor import Capabilities, CrashReason
from conveyor.runners import ConcurrentRunner, ConcurrencyType, SequentialRunner
from conveyor.runners.remote import loads, report_outcome
from conveyor.testing import RunnerConformance
from conveyor_subprocess import SubprocessRunner


def _drive_lying(runner, attempt, payload, *, dead_is_completed=False, drop_logs=False):
    """SubprocessRunner._drive, with the lies switched on."""
    child = runner._spawn(attempt)
    if child is None:
        return
    attempt.mark_running()
    try:
        out, _ = child.communicate(payload)
    finally:
        with runner._lock:
            runner._children.pop(attempt, None)
    if child.returncode != 0:
        if dead_is_completed:
            attempt.succeed(None)
        else:
            attempt.crash("died", reason=CrashReason.WORKER_DIED)
        return
    outcome, value = loads(out)
    if drop_logs:
        outcome = outcome._replace(records=())
    report_outcome(attempt, outcome, value)


@attrs.define(kw_only=True, eq=True)
class DeadIsCompleted(SubprocessRunner):
    name = "dead-is-completed"

    def _drive(self, attempt, payload):
        _drive_lying(self, attempt, payload, dead_is_completed=True)


@attrs.define(kw_only=True, eq=True)
class DropsLogs(SubprocessRunner):
    name = "drops-logs"

    def _drive(self, attempt, payload):
        _drive_lying(self, attempt, payload, drop_logs=True)


@attrs.define(kw_only=True, eq=True)
class ClaimsNativeFutures(SubprocessRunner):
    name = "claims-native-futures"
    capabilities = Capabilities(hard_timeouts=True, cancel_running=True, isolation=True, native_futures=True)


@attrs.define(kw_only=True, eq=True)
class ThreadsClaimIsolation(ConcurrentRunner):
    name = "threads-claim-isolation"
    capabilities = Capabilities(isolation=True)


@attrs.define(kw_only=True, eq=True)
class RunsCancelledQueued(ConcurrentRunner):
    name = "runs-cancelled-queued"

    def _run(self, attempt):
        # Never looks at attempt.finished: a run cancelled in the queue still runs.
        try:
            value = attempt.fn(*attempt.args, **attempt.kwargs)
        except Exception as exc:
            attempt.fail(exc)
        else:
            attempt.succeed(value)

    def cancel(self, attempt):
        return True


@attrs.define(kw_only=True, eq=True)
class ClaimsResources(SequentialRunner):
    name = "claims-resources"
    capabilities = Capabilities(resources=True)


@attrs.define(kw_only=True, eq=True)
class LeavesProcesses(SequentialRunner):
    name = "leaves-processes"

    def on_start(self):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        with open(os.environ["LIAR_PIDS"], "a") as fh:
            fh.write(f"{child.pid}\\n")


@attrs.define(kw_only=True, eq=True)
class NeverReports(ConcurrentRunner):
    name = "never-reports"

    def execute(self, attempt):
        pass  # takes the attempt, never a word about it


LIAR = {LIAR}


class TestLiar(RunnerConformance):
    @pytest.fixture
    def runner(self):
        return LIAR()
'''

CASES = {
    "DeadIsCompleted": ("test_isolation_is_what_it_claims", "never COMPLETED"),
    "ThreadsClaimIsolation": ("test_isolation_is_what_it_claims", "declares `isolation`"),
    "RunsCancelledQueued": (
        "test_a_run_cancelled_while_queued_never_runs",
        "ran a run it had confirmed cancelled while queued",
    ),
    "DropsLogs": ("test_worker_logs_reach_the_driver", "lost a task's log record"),
    "ClaimsResources": ("test_resources_are_honoured", "declares `resources`"),
    "ClaimsNativeFutures": ("test_native_futures_stay_on_the_backend", "declares `native_futures`"),
    "LeavesProcesses": ("test_stop_leaves_no_process_behind", "left processes running"),
    "NeverReports": ("test_reports_every_attempt", "never reported"),
}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("liar", sorted(CASES))
def test_the_kit_catches_a_liar(
    liar: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A runner that breaks one promise fails the case that checks it, with a message naming
    the promise."""
    case, words = CASES[liar]
    pids = tmp_path / "pids"
    monkeypatch.setenv("LIAR_PIDS", str(pids))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), str(ROOT)]))
    pytester.makepyfile(test_liar=textwrap.dedent(LIARS).replace("{LIAR}", liar))
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", case)
    finally:
        for pid in pids.read_text().split() if pids.exists() else []:
            try:
                os.kill(int(pid), signal.SIGTERM)  # the liar's own leftover, started for this
            except ProcessLookupError:
                pass
    output = result.stdout.str()
    assert result.ret != 0, output
    assert words in output, output


def test_the_kit_passes_an_honest_process_runner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example subprocess runner, which keeps every promise, passes the promise cases."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), str(ROOT)]))
    pytester.makepyfile(
        test_honest=textwrap.dedent(
            """
            import pytest
            from conveyor.testing import RunnerConformance
            from conveyor_subprocess import SubprocessRunner

            class TestHonest(RunnerConformance):
                @pytest.fixture
                def runner(self):
                    return SubprocessRunner(max_workers=2)
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "reports or queued or logs or isolation or stop"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 5 and not outcomes.get("failed"), result.stdout.str()
    assert not outcomes.get("errors"), result.stdout.str()


TYPO_RUNNER = """
import attrs
import pytest

from conveyor.runners import SequentialRunner
from conveyor.testing import RunnerConformance


@attrs.define(kw_only=True, eq=True)
class TypoRunner(SequentialRunner):
    \"\"\"Runs sync tasks in the caller's thread; spells the sys.exit crash reason its own way.\"\"\"

    name = "typo"

    def execute(self, attempt):
        try:
            value = attempt.fn(*attempt.args, **attempt.kwargs)
        except SystemExit:
            attempt.crash("The task exited.", reason="sys-exit")
        except Exception as exc:
            attempt.fail(exc)
        else:
            attempt.succeed(value)


class TestTypo(RunnerConformance):
    @pytest.fixture
    def runner(self):
        return TypoRunner()
"""


def test_a_crash_reason_that_is_no_member_fails_the_suite(pytester: pytest.Pytester) -> None:
    """A runner crashing a run with a reason string that is not a CrashReason member fails the
    suite, with a message that names the reason and the fix."""
    pytester.makepyfile(test_typo=textwrap.dedent(TYPO_RUNNER))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "test_sys_exit_is_a_crash", "-W", "error"
    )
    output = result.stdout.str()
    assert "not conveyor.CrashReason members" in output, output
    assert "'sys-exit'" in output, output
    assert "1 error" in output or "1 failed" in output, output
