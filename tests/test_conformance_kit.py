"""The conformance kit itself: it fails a runner that breaks a promise, naming the promise."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

TYPO_RUNNER = '''
import attrs
import pytest

from conveyor.runners import SequentialRunner
from conveyor.testing import RunnerConformance


@attrs.define(kw_only=True, eq=True)
class TypoRunner(SequentialRunner):
    """Runs sync tasks in the caller's thread; spells the sys.exit crash reason its own way."""

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
'''


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
