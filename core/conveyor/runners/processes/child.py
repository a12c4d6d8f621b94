"""
The worker process of the ``processes`` runner: one loop that runs the packed calls the driver
sends on its pipe, one at a time, and sends each outcome back.

- SIGINT and SIGTERM are caught and dropped: a Ctrl-C reaches every process of the terminal's
  group (and a supervisor may SIGTERM a whole group), and the driver alone decides what they
  mean. (Caught, not ignored: an ignored signal stays ignored in the processes a task starts.
  The driver starts workers with both blocked, so none arrives before this is set.)
- :data:`STOP_SIGNAL` (SIGUSR1) is the driver's request to stop: it raises in the running task,
  so its ``finally`` blocks and context managers run, and the worker then dies of it. The
  driver follows up with SIGKILL after a grace period.
- A worker whose driver died exits at once, even in the middle of a task.
- stdout and stderr are line buffered and flushed after every call, so that prints reach the
  driver's terminal as they are made and are not lost if the worker is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

from conveyor.runners.outcome import format_exception
from conveyor.runners.processes import framing
from conveyor.runners.processes.settings import resolve_initializer
from conveyor.runners.remote import describe_type, dumps, loads, run_packed

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["EXIT_NOT_READY", "EXIT_ORPHANED", "STOP_SIGNAL", "main"]

#: The exit code of a worker that could not get ready (its hello says why).
EXIT_NOT_READY = 3
#: The exit code of a worker whose driver died.
EXIT_ORPHANED = 4
#: The signal by which the driver asks a worker to stop what it runs, and exit.
STOP_SIGNAL = signal.SIGUSR1


class _Terminate(BaseException):
    """STOP_SIGNAL arrived: the driver is stopping this worker."""


_terminating = False


def _drop(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM: the driver decides what they mean, not this worker."""


def _on_stop_signal(signum: int, frame: Any) -> None:
    global _terminating
    _terminating = True
    raise _Terminate


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # a closed or broken stream: nothing to save
            pass


def _die_of_stop_signal() -> NoReturn:
    _flush()
    signal.signal(STOP_SIGNAL, signal.SIG_DFL)
    os.kill(os.getpid(), STOP_SIGNAL)
    os._exit(128 + STOP_SIGNAL)  # pragma: no cover - the signal ended the process


def _line_buffered() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, write_through=False)


def _watch_parent() -> None:
    """End this worker as soon as its driver dies, whatever it is doing."""
    import multiprocessing  # deferred: the parent's sentinel exists in the worker only
    from multiprocessing.connection import wait  # deferred: as above

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="conveyor-watch-driver", daemon=True).start()


def _address_space() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _prepare(blob: bytes) -> tuple[framing.Hello, int | None]:
    """
    Run the initializer and set the memory limit; the hello to send and the call budget.

    ``blob`` is what the runner's start pickled with the envelope's ``dumps`` (an initializer
    may be a function of ``__main__``): the initializer or its dotted name, its arguments, the
    memory limit in bytes and the number of calls before the worker retires.
    """
    # The handlers that importing the main script again installed (a logging.basicConfig at
    # module level) would print the tasks' records here too: they reach the driver's instead.
    logging.getLogger().handlers.clear()
    initializer, initargs, limit, max_tasks = loads(blob)
    if initializer is not None:
        label = initializer if isinstance(initializer, str) else describe_type(initializer)
        try:
            fn = resolve_initializer(initializer, "ProcessesRunner")
            fn(*initargs)
        except Exception as exc:
            try:
                error: bytes | None = dumps(exc)
            except Exception:
                error = None
            problem = f"the initializer {label} raised {type(exc).__name__}: {exc}"
            return framing.Hello("failed", problem, error, format_exception(exc)), None
    if limit is not None:
        used = _address_space()
        if used is not None and used >= limit:
            problem = (
                f"its memory_limit of {limit // 2**20} MiB is below the {used // 2**20} MiB of "
                "address space a worker uses before it runs a task"
            )
            return framing.Hello("failed", problem), None
        import resource  # deferred: only a worker with a memory limit needs it

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return framing.Hello(framing.READY), max_tasks


def _serve(conn: Connection, max_tasks: int | None) -> None:
    done = 0
    while True:
        try:
            payload = conn.recv_bytes()
        except EOFError:  # the driver closed its end
            return
        if payload == framing.STOP:
            return
        outcome, value = run_packed(payload)  # never raises
        if _terminating:  # the stop signal arrived while the call ran: no report is wanted
            _die_of_stop_signal()
        conn.send_bytes(framing.pack_result(outcome, value))
        _flush()
        done += 1
        if max_tasks is not None and done >= max_tasks:
            return


def main(conn: Connection, settings: bytes) -> None:
    """The target of every worker process: get ready, say so, then serve calls until told."""
    signal.signal(signal.SIGINT, _drop)
    signal.signal(signal.SIGTERM, _drop)
    signal.signal(STOP_SIGNAL, _on_stop_signal)
    if hasattr(signal, "pthread_sigmask"):  # what arrived meanwhile is dropped now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _line_buffered()
        _watch_parent()
        try:
            hello, max_tasks = _prepare(settings)
        except Exception as exc:  # the settings did not unpickle here
            hello = framing.Hello("failed", f"{type(exc).__name__}: {exc}")
            max_tasks = None
        conn.send_bytes(framing.pack_hello(hello))
        if hello.status != framing.READY:
            _flush()
            os._exit(EXIT_NOT_READY)
        _serve(conn, max_tasks)
    except _Terminate:
        _die_of_stop_signal()
    except (BrokenPipeError, ConnectionResetError):  # the driver is gone
        pass
    _flush()
    # Exit now, without waiting for threads a task left running (as multiprocessing's own
    # pool workers do when they are done).
    os._exit(0)
