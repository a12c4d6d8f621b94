"""
The cluster a :class:`~conveyor_dask.DaskRunner` starts when given no ``address``.

:class:`LocalProcessCluster` is a ``distributed.LocalCluster`` whose scheduler runs in a process
of its own instead of in the driver. The scheduler keeps state for every task it holds and logs
of recent messages; in the driver process that state counted against the driver's memory and
competed with the flow for its interpreter lock. Everything else (the nannies and their worker
processes, ``n_workers``, ``threads_per_worker``, ``resources``, ``memory_limit``, the dashboard,
``scheduler_kwargs``) is as ``LocalCluster`` has it.

The scheduler process gets the driver's ``sys.path`` and Dask configuration (the parts of it
that pickle); the scheduler's options travel to it with cloudpickle. It ignores SIGINT (the
driver decides when it stops: a Ctrl-C in a terminal reaches the whole process group) and ends
when the cluster closes or when the driver dies: it watches a pipe from the driver and exits
when that pipe closes. With ``processes=False`` the workers are threads of the driver and talk
to the scheduler over TCP on loopback; an explicit ``protocol="inproc://"`` keeps the scheduler
in the driver, as ``LocalCluster`` has it.

Importing this module imports ``distributed``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import sys
from typing import Any

import cloudpickle
import dask.config
from distributed import LocalCluster, Scheduler
from distributed.deploy.spec import ProcessInterface

from conveyor_dask import _internals

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
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        """The scheduler process's PID while it runs (None once it exited and was reaped)."""
        process = self.process
        if process is None or process.returncode is not None:
            return None
        return process.pid

    @property
    def alive(self) -> bool:
        return self.pid is not None

    async def start(self) -> None:
        spec = {"options": self.options, "config": dask.config.config, "level": self.log_level}
        try:
            try:
                blob = cloudpickle.dumps(spec)
            except Exception:  # most likely a config value: leave those behind, try again
                blob = cloudpickle.dumps({**spec, "config": _picklable(dask.config.config)})
        except Exception as exc:
            msg = (
                "the scheduler options cannot be pickled for the scheduler process "
                f"({type(exc).__name__}: {exc}); pass picklable `scheduler_kwargs`, or use "
                "cluster_class='distributed.LocalCluster' to keep the scheduler in this process"
            )
            raise RuntimeError(msg) from exc
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            json.dumps(sys.path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            address = await asyncio.wait_for(self._handshake(blob), START_LIMIT)
        except asyncio.TimeoutError:
            await self._kill()
            msg = f"the Dask scheduler process did not start within {START_LIMIT:.0f} s"
            raise RuntimeError(msg) from None
        except BaseException:
            await self._kill()
            raise
        if address is None:
            self.returncode = await self.process.wait()
            self.process = None
            msg = (
                f"the Dask scheduler process exited with code {self.returncode} before it "
                "started; its error is in the output above"
            )
            raise RuntimeError(msg)
        self.address = address
        logger.debug("Dask scheduler process %d at %s", self.process.pid, self.address)
        await super().start()  # type: ignore[no-untyped-call]

    async def _handshake(self, blob: bytes) -> str | None:
        """Send the spec; return the address the scheduler reports, or None if it exited."""
        assert self.process is not None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(base64.b64encode(blob) + b"\n")
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
        if process is not None:
            if process.returncode is None:
                assert process.stdin is not None
                process.stdin.close()
                try:
                    await asyncio.wait_for(process.wait(), STOP_LIMIT)
                except asyncio.TimeoutError:
                    logger.warning(
                        "Dask scheduler process %d did not stop; killing it", process.pid
                    )
                    process.kill()
            self.returncode = await process.wait()
        await super().close()  # type: ignore[no-untyped-call]

    async def _kill(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.returncode is None:
                process.kill()
            self.returncode = await process.wait()


class LocalProcessCluster(LocalCluster):
    """
    A ``distributed.LocalCluster`` whose scheduler runs in its own process.

    Takes ``LocalCluster``'s arguments. ``cluster.scheduler`` is a handle on that process, not a
    ``Scheduler``: reach the scheduler through a client (``client.run_on_scheduler``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._silence_logs = kwargs.get("silence_logs", logging.WARN)
        if kwargs.get("processes") is False and not kwargs.get("protocol"):
            # LocalCluster would pick inproc://, which cannot reach another process.
            kwargs["protocol"] = "tcp://"
        if kwargs.get("processes", True) is not False:
            # Worker processes ignore a Ctrl-C sent to the whole group: the driver stops them.
            preload = kwargs.get("preload") or []
            preload = [preload] if isinstance(preload, str) else list(preload)
            kwargs["preload"] = [*preload, "conveyor_dask._preload"]
        try:
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            _internals.stop_loop_thread(self)  # SpecCluster leaves it running when a start fails
            raise

    # _start and _close override SpecCluster's private methods (see conveyor_dask._internals):
    # LocalCluster builds its scheduler spec and starts in one call, so nothing public comes
    # between the two.

    async def _start(self) -> None:
        options = _internals.in_process_scheduler_options(self, Scheduler)
        if options is not None and not str(options.get("protocol") or "").startswith("inproc"):
            # SpecCluster starts it, and on failure closes what it started and says so.
            _internals.use_scheduler(
                self,
                SchedulerProcess,
                {"options": options, "log_level": _log_level(self._silence_logs)},
            )
        await super()._start()  # type: ignore[no-untyped-call]

    async def _close(self) -> None:
        scheduler = self.scheduler
        if isinstance(scheduler, SchedulerProcess) and scheduler.process and not scheduler.alive:
            # The scheduler process died: nothing can retire the workers through it, and a
            # connection to it would only time out. Close the nannies here.
            logger.warning("The Dask scheduler process exited on its own; closing the workers.")
            workers = _internals.forget_workers(self)
            await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
            await _internals.drop_scheduler_comm(self)
        await super()._close()  # type: ignore[no-untyped-call]


def _picklable(config: Any) -> Any:
    """``config`` without the values that do not pickle (a thread pool set as ``pool``…)."""
    try:
        cloudpickle.dumps(config)
        return config
    except Exception:
        pass
    if isinstance(config, dict):
        kept = {}
        for key, value in config.items():
            value = _picklable(value)
            if value is not _DROP:
                kept[key] = value
        return kept
    return _DROP


_DROP = object()  # what _picklable returns for a value that does not pickle


def _log_level(silence_logs: Any) -> int:
    if not silence_logs:
        return logging.INFO
    if isinstance(silence_logs, str):
        return int(getattr(logging, silence_logs.upper()))
    return int(silence_logs)


def _read_line(fd: int) -> bytes:
    """One line from ``fd``, read unbuffered (nothing past it is consumed)."""
    chunks = []
    while (byte := os.read(fd, 1)) and byte != b"\n":
        chunks.append(byte)
    return b"".join(chunks)


def _serve() -> None:
    """The scheduler process: read the spec from stdin, serve until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = cloudpickle.loads(base64.b64decode(_read_line(0)))
    dask.config.update(dask.config.config, spec["config"], priority="new")
    logging.getLogger("distributed").setLevel(spec["level"])
    asyncio.run(_run_scheduler(spec["options"]))


async def _run_scheduler(options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    parent_gone = asyncio.Event()

    def on_stdin() -> None:
        if not os.read(0, 4096):  # EOF: the cluster closed the pipe, or the driver died
            loop.remove_reader(0)
            parent_gone.set()

    async with Scheduler(**options) as scheduler:
        sys.stdout.write(json.dumps({"address": scheduler.address}) + "\n")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads the pipe from here on
        loop.add_reader(0, on_stdin)
        finished = asyncio.ensure_future(scheduler.finished())
        gone = asyncio.ensure_future(parent_gone.wait())
        await asyncio.wait([finished, gone], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (finished, gone):
            waiter.cancel()
