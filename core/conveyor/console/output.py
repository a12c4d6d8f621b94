"""
Where ``conveyor run`` writes: its own output (the report, the JSON document) on a stream of its
own, and, with ``--json``, everything else that would reach stdout on stderr instead.

The stream is a duplicate of the stdout file descriptor taken before the flow is loaded, so a
task that closes ``sys.stdout`` cannot take the report down. With ``--json`` file descriptor 1
points at stderr while the flow runs, so prints of tasks, and of processes the runner starts
(Dask workers, Ray's log monitor), go to stderr and stdout holds one JSON document only.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["own_stdout"]


def _flush(stream: TextIO | None) -> None:
    try:
        if stream is not None:
            stream.flush()
    except (ValueError, OSError):  # closed by a task, or a broken pipe
        pass


@contextlib.contextmanager
def own_stdout(divert: bool) -> Iterator[TextIO]:
    """
    Yield the stream for conveyor's own output; with ``divert``, stdout goes to stderr inside
    the block. Where stdout is no file descriptor (captured by a test, say), ``sys.stdout``
    itself is yielded and only Python-level writes are diverted.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is None:
        out = sys.stdout
        with contextlib.redirect_stdout(sys.stderr) if divert else contextlib.nullcontext():
            yield out
        return
    _flush(sys.stdout)
    saved = os.dup(fd)
    stream = os.fdopen(saved, "w", encoding="utf-8", errors="replace", closefd=True)
    if divert:
        os.dup2(sys.stderr.fileno(), fd)
    try:
        yield stream
    finally:
        _flush(sys.stdout)
        _flush(sys.stderr)
        if divert:
            os.dup2(saved, fd)
        _flush(stream)
        stream.close()
