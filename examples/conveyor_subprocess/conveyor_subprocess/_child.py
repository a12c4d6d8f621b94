"""
The child process: read one packed call from stdin, run it, write ``(Outcome, value)`` back.

Run as ``python -m conveyor_subprocess._child`` by :class:`~conveyor_subprocess.SubprocessRunner`.
Stdout carries nothing but the pickled result: whatever the task prints goes to stderr.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run the call on stdin, write its outcome to stdout, and exit at once."""
    channel = os.fdopen(os.dup(1), "wb")  # the result channel, not inherited by grandchildren
    os.dup2(2, 1)  # the task's prints go to stderr
    # Imported only now, so that whatever importing prints goes to stderr as well.
    from conveyor import CrashReason
    from conveyor.runners.remote import Outcome, dumps, run_packed

    outcome, value = run_packed(sys.stdin.buffer.read())  # never raises
    try:
        blob = dumps((outcome, value))
    except Exception as exc:  # run_packed checked the value pickles; this is a safety net
        failed = Outcome(
            "crash",
            error_type=type(exc).__name__,
            error_message=f"The task's result could not be pickled: {exc}",
            reason=CrashReason.RESULT_SERIALIZATION,
            records=outcome.records,
        )
        blob = dumps((failed, None))
    channel.write(blob)
    channel.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit now, like multiprocessing's workers: a thread the task left running must not keep
    # this process (and the driver waiting for it) alive.
    os._exit(0)


if __name__ == "__main__":
    main()
