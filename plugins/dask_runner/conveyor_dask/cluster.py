"""
The cluster a :class:`~conveyor_dask.DaskRunner` starts when given no ``address``.

:class:`LocalProcessCluster` is a ``distributed.LocalCluster`` whose scheduler runs in a process
of its own instead of in the driver. The scheduler keeps state for every task it holds and logs
of recent messages; in the driver process that state counted against the driver's memory and
competed with the flow for its interpreter lock. Everything else (the nannies and their worker
processes, ``n_workers``, ``threads_per_worker``, ``resources``, ``memory_limit``, the dashboard,
``scheduler_kwargs``) is as ``LocalCluster`` has it.

The scheduler process gets the driver's ``sys.path`` and Dask configuration. It ignores SIGINT
(the driver decides when it stops: a Ctrl-C in a terminal reaches the whole process group) and
ends when the cluster closes or when the driver dies: it watches a pipe from the driver and
exits when that pipe closes.

Importing this module imports ``distributed``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import pickle
import signal
import sys
import threading
from typing import Any

import dask.config
from distributed import LocalCluster, Scheduler
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface

__all__ = ["LocalProcessCluster"]

logger = logging.getLogger(__name__)

# How long the scheduler process may take to start, and to stop once asked.
START_LIMIT = 60.0
STOP_LIMIT = 10.0

# The scheduler process's first line on stdout.
_ADDRESS_PREFIX = b'{"address": '

# The child's program: take the parent's sys.path before importing anything of ours.
_CHILD = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from conveyor_dask.cluster import _serve; _serve()"
)


class SchedulerProcess(ProcessInterface):
    """
    A ``distributed.Scheduler`` in a child process, for ``SpecCluster``'s scheduler slot.

    ``options`` are the ``Scheduler`` keyword arguments (``LocalCluster`` builds them from
    ``host``, ``scheduler_port``, ``dashboard_address``, ``scheduler_kwargs``…); they and the
    current Dask configuration travel pickled over the child's stdin, which stays open for as
    long as the scheduler should live.
    """

    def __init__(self, options: dict[str, Any], log_level: int = logging.WARNING) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.options = options
        self.log_level = log_level
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The scheduler process's PID while it runs."""
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        spec = {"options": self.options, "config": dask.config.config, "level": self.log_level}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            json.dumps(sys.path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            address = await asyncio.wait_for(self._handshake(spec), START_LIMIT)
        except asyncio.TimeoutError:
            await self._kill()
            msg = f"the Dask scheduler process did not start within {START_LIMIT:.0f} s"
            raise RuntimeError(msg) from None
        except BaseException:
            await self._kill()
            raise
        if address is None:
            code = await self.process.wait()
            self.process = None
            msg = (
                f"the Dask scheduler process exited with code {code} before it started; "
                "its error is in the output above"
            )
            raise RuntimeError(msg)
        self.address = address
        logger.debug("Dask scheduler process %d at %s", self.process.pid, self.address)
        await super().start()  # type: ignore[no-untyped-call]

    async def _handshake(self, spec: dict[str, Any]) -> str | None:
        """Send the spec; return the address the scheduler reports, or None if it exited."""
        assert self.process is not None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(base64.b64encode(pickle.dumps(spec)) + b"\n")
        try:
            await self.process.stdin.drain()
        except OSError:  # it exited before reading the spec
            return None
        while line := await self.process.stdout.readline():
            if line.startswith(_ADDRESS_PREFIX):  # anything else printed there is not ours
                return str(json.loads(line)["address"])
        return None

    async def close(self) -> None:
        """Close the pipe the scheduler watches, wait for it to exit, kill it if it does not."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_LIMIT)
            except asyncio.TimeoutError:
                logger.warning("Dask scheduler process %d did not stop; killing it", process.pid)
                process.kill()
                await process.wait()
        await super().close()  # type: ignore[no-untyped-call]

    async def _kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


class LocalProcessCluster(LocalCluster):
    """
    A ``distributed.LocalCluster`` whose scheduler runs in its own process.

    Takes ``LocalCluster``'s arguments. ``cluster.scheduler`` is a handle on that process, not a
    ``Scheduler``: reach the scheduler through a client (``client.run_on_scheduler``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._silence_logs = kwargs.get("silence_logs", logging.WARN)
        try:
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            # SpecCluster leaves its event loop thread running when its start fails.
            runner = getattr(self, "_loop_runner", None)
            if runner is not None:
                runner.stop()
            raise

    async def _start(self) -> None:
        if self.scheduler is None and self.scheduler_spec is not None:
            options = dict(self.scheduler_spec.get("options", {}))
            try:
                self.scheduler = await SchedulerProcess(options, _log_level(self._silence_logs))
            except Exception as exc:
                self.status = Status.closed  # nothing was started: SchedulerProcess cleaned up
                raise RuntimeError(f"Cluster failed to start: {exc}") from exc
        await super()._start()  # type: ignore[no-untyped-call]


def _log_level(silence_logs: Any) -> int:
    if not silence_logs:
        return logging.INFO
    if isinstance(silence_logs, str):
        return int(getattr(logging, silence_logs.upper()))
    return int(silence_logs)


def _serve() -> None:
    """The scheduler process: read the spec from stdin, serve until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = pickle.loads(base64.b64decode(sys.stdin.buffer.readline()))
    dask.config.update(dask.config.config, spec["config"], priority="new")
    logging.getLogger("distributed").setLevel(spec["level"])
    asyncio.run(_run_scheduler(spec["options"]))


async def _run_scheduler(options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    parent_gone = asyncio.Event()

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the cluster closed it, or the driver died
        with contextlib.suppress(RuntimeError):  # the loop has ended: the scheduler was closed
            loop.call_soon_threadsafe(parent_gone.set)

    async with Scheduler(**options) as scheduler:
        sys.stdout.write(json.dumps({"address": scheduler.address}) + "\n")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads the pipe from here on
        threading.Thread(target=watch_parent, name="conveyor-parent-watch", daemon=True).start()
        finished = asyncio.ensure_future(scheduler.finished())
        gone = asyncio.ensure_future(parent_gone.wait())
        await asyncio.wait([finished, gone], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (finished, gone):
            waiter.cancel()
