"""
The process's connection to Ray: started or joined by conveyor under a deadline, shared by every
Ray runner in the process, and shut down only by the runner that made it (when its last user
stops).

Ray's own behaviour that this module exists to contain:

- ``ray.init(address=...)`` hangs (it logs and retries) when the address does not answer, so
  conveyor checks the port first (:mod:`conveyor_ray._address`) and runs ``ray.init`` in a
  thread with a deadline;
- a ``.remote()`` after ``ray.shutdown()`` starts a new local cluster unless auto-connect is off;
- a local Ray binds the machine's outside address, and even rewrites ``127.0.0.1`` in an
  address to it, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in effect.

The last two are turned off through Ray internals, all in :mod:`conveyor_ray._internals`.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import attrs

from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.redact import redact
from conveyor_ray._address import answers, check_reachable, host_port, is_loopback, local_raylet
from conveyor_ray._internals import (
    ENV_ALWAYS,
    ENV_LOCAL,
    NODE_IP_KWARG,
    TEMP_DIR_KWARG,
    env,
    import_ray,
    in_worker,
    loopback,
)
from conveyor_ray._private_dir import PrivateDir, private_token_file, umask

__all__ = [
    "LOCAL_START_SECONDS",
    "Session",
    "acquire",
    "current_gcs_address",
    "gone",
    "is_current",
    "mark_lost",
    "release",
]

logger = logging.getLogger("conveyor.ray")

# How long starting a local Ray may take, at least (the connect timeout applies when joining).
LOCAL_START_SECONDS = 60.0

_lock = threading.RLock()
_generations = itertools.count(1)
_current: Session | None = None


@attrs.define(eq=False)
class Session:
    """
    One connection of this process to one Ray cluster, as conveyor sees it.

    ``owned`` sessions were started or joined by conveyor and are shut down when their last
    runner stops; other sessions (Ray initialised by the user, or a Ray worker running a nested
    flow) are never shut down by conveyor. ``closed`` turns True when conveyor shut it down or
    found it gone. ``raylet_address`` is this node's raylet, probed with the GCS (a driver's
    tasks die with it, while the GCS answers on).
    """

    gcs_address: str
    owned: bool
    started_local: bool
    in_worker: bool
    generation: int = attrs.field(factory=lambda: next(_generations))
    users: int = 0
    closed: bool = False
    lost: str | None = None
    owner: Any = attrs.field(default=None, repr=False)
    raylet_address: str | None = None

    def describe(self) -> str:
        """Where this session's cluster is, for messages."""
        kind = "local Ray started by conveyor" if self.started_local else "Ray cluster"
        return f"the {kind} at {self.gcs_address}"


def current_gcs_address(ray: Any) -> str:
    """The GCS address of the cluster this process is connected to."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:
        return "unknown"


def acquire(
    *,
    address: str | None,
    init_kwargs: Mapping[str, Any],
    connect_timeout: float,
) -> Session:
    """
    Return the session a starting runner uses: the process's existing Ray connection if there
    is one, else a new one that conveyor starts (no ``address``) or joins (``address``).

    Raises :class:`~conveyor.BackendUnavailable` if Ray cannot be started or joined within the
    deadline, and :class:`~conveyor.ConfigError` if this process is already connected to a
    different cluster than ``address``.
    """
    global _current
    with _lock:
        ray = import_ray()
        if ray.is_initialized():
            gcs = current_gcs_address(ray)
            session = _current
            if session is None or session.closed or session.gcs_address != gcs:
                nested = in_worker(ray)
                session = Session(gcs, owned=False, started_local=False, in_worker=nested)
                session.raylet_address = None if nested else local_raylet(ray)
                _current = session
            _check_same_cluster(address, session)
            session.users += 1
            return session
        if _current is not None:  # Ray was shut down behind conveyor's back
            _current.closed = True
            _current = None
        session = _connect(ray, address, init_kwargs, connect_timeout)
        session.users = 1
        _current = session
        return session


def _check_same_cluster(address: str | None, session: Session) -> None:
    if not address or address in ("auto", "local") or address.startswith("ray://"):
        return
    want, have = host_port(address), host_port(session.gcs_address)
    if want is None or have is None or want == have:
        return
    if is_loopback(want[0]) and is_loopback(have[0]) and want[1] == have[1]:
        return
    msg = (
        f"This process is already connected to the Ray cluster at {session.gcs_address}, so it "
        f"cannot join `address={redact(address)!r}` too; a process talks to one Ray cluster. Use "
        "that address, or run the flow in another process."
    )
    raise ConfigError(msg)


def _connect(
    ray: Any, address: str | None, init_kwargs: Mapping[str, Any], connect_timeout: float
) -> Session:
    kwargs: dict[str, Any] = dict(init_kwargs)
    private: PrivateDir | None = None
    if address:
        kwargs["address"] = address
        started = time.monotonic()
        check_reachable(address, connect_timeout)
        remaining = connect_timeout - (time.monotonic() - started)
        target = host_port(address)
        on_loopback = target is not None and is_loopback(target[0])
        values = dict(ENV_ALWAYS)
        what = f"join the Ray cluster at `address={redact(address)!r}`"
        deadline = max(remaining, 0.5)
    else:
        # "local" makes Ray start its own instance, instead of joining whatever cluster a
        # `ray start` on this machine left in /tmp/ray (what a bare ray.init() does).
        kwargs["address"] = "local"
        kwargs.setdefault("num_cpus", os.cpu_count() or 1)
        kwargs.setdefault("include_dashboard", False)
        on_loopback = NODE_IP_KWARG not in kwargs
        values = {**ENV_ALWAYS, **ENV_LOCAL}
        if not on_loopback:
            values.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        what = "start a local Ray"
        deadline = max(connect_timeout, LOCAL_START_SECONDS)
        if TEMP_DIR_KWARG not in kwargs and os.name == "posix":
            private = PrivateDir()  # the local Ray's files, this user's alone
            kwargs[TEMP_DIR_KWARG] = str(private.path)
        private_token_file()
    with env(values):
        if on_loopback:
            with loopback(ray):
                owner = _init_with_deadline(ray, kwargs, deadline, what, private)
        else:
            owner = _init_with_deadline(ray, kwargs, deadline, what, private)
    gcs = current_gcs_address(ray)
    session = Session(gcs, owned=True, started_local=not address, in_worker=False)
    session.owner = owner
    session.raylet_address = local_raylet(ray)
    if not address:
        logger.info("conveyor started a local Ray at %s (bound to loopback).", gcs)
    else:
        logger.info("conveyor joined the Ray cluster at %s.", gcs)
    return session


class _Owner:
    """
    The thread that starts (or joins) Ray and later shuts it down.

    It stays alive as long as the Ray it started: Ray gives the processes it spawns a
    parent-death signal bound to the spawning *thread*, so a local Ray started from a thread
    that then exits is killed with it. It is a daemon, so it never delays interpreter exit
    (Ray's own exit hook shuts Ray down then).
    """

    def __init__(self, ray: Any, kwargs: dict[str, Any], private: PrivateDir | None) -> None:
        self.ray = ray
        self.kwargs = kwargs
        self.private = private
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.stop = threading.Event()
        self.abandoned = False
        self._verdict = threading.Lock()  # orders "the start finished" against "gave up"
        self._finished = False
        self.thread = threading.Thread(target=self._run, name="conveyor-ray-owner", daemon=True)

    def _run(self) -> None:
        private = self.private
        try:
            # Ray's processes inherit the umask: their files are this user's alone.
            with umask(0o077) if private is not None else nullcontext():
                self.ray.init(**self.kwargs)
        except BaseException as exc:
            self.error = exc
        with self._verdict:
            self._finished = True
            abandoned = self.abandoned
        self.started.set()
        if self.error is None:
            if not abandoned:
                self.stop.wait()
            # Asked to stop, or conveyor gave up on this start: leave no connection behind.
            _quiet_shutdown(self.ray)
        if private is not None:
            private.remove()

    def start(self, deadline: float) -> bool:
        """Start Ray; return False if it did not finish within ``deadline`` seconds."""
        self.thread.start()
        self.started.wait(deadline)
        with self._verdict:
            if not self._finished:
                self.abandoned = True
                return False
        return True

    def shutdown(self, timeout: float = 30.0) -> None:
        """Shut Ray down from the owner thread, and wait for it (bounded)."""
        self.stop.set()
        self.thread.join(timeout)


def _init_with_deadline(
    ray: Any, kwargs: dict[str, Any], deadline: float, what: str, private: PrivateDir | None
) -> _Owner:
    owner = _Owner(ray, kwargs, private)
    if not owner.start(deadline):
        msg = (
            f"conveyor could not {what} within {deadline:g} s (`connect_timeout`); Ray did not "
            "answer. Check that the cluster is up and reachable, or raise `connect_timeout`."
        )
        if kwargs.get("address") != "local":
            msg += (
                " If the cluster uses token authentication, set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to its token: with a wrong or missing "
                "token Ray only logs 'Unauthenticated' and retries."
            )
        raise BackendUnavailable(msg)
    error = owner.error
    if error is not None:
        if isinstance(error, (TypeError, ValueError)) and kwargs.get("address") == "local":
            msg = f"Ray rejected `init_kwargs`: {type(error).__name__}: {error}"
            raise ConfigError(msg) from error
        msg = f"conveyor could not {what}: {type(error).__name__}: {error}"
        raise BackendUnavailable(msg) from error
    return owner


def _quiet_shutdown(ray: Any) -> None:
    try:
        ray.shutdown()
    except BaseException:
        logger.debug("ray.shutdown() raised while abandoning a start.", exc_info=True)


def release(session: Session) -> None:
    """
    A runner that used ``session`` stopped. The last runner of a session conveyor made shuts
    Ray down; conveyor never shuts down a Ray it did not start or join itself.
    """
    global _current
    with _lock:
        session.users -= 1
        if session.users > 0 or not session.owned or session.closed:
            return
        session.closed = True
        if _current is session:
            _current = None
        # A lost cluster is shut down too: that ends what is left of a Ray conveyor started.
        if session.owner is not None:
            session.owner.shutdown()


def mark_lost(session: Session, why: str) -> None:
    """Record that ``session``'s cluster is gone; its results can no longer be fetched."""
    if session.lost is None:
        session.lost = why


def gone(session: Session, ray: Any, *, probe: bool = False) -> str | None:
    """
    Why ``session``'s cluster is gone, or None while it is there; ``probe`` also asks its GCS
    and this node's raylet, whose ports refuse connections at once when they died.
    """
    if session.lost is not None:
        return session.lost
    if not ray.is_initialized():
        return "Ray was shut down in this process"
    if probe and not answers(session.gcs_address):
        return f"the Ray cluster's GCS at {session.gcs_address} no longer answers"
    raylet = session.raylet_address
    if probe and raylet is not None and not answers(raylet):
        return f"this node's Ray raylet at {raylet} no longer answers"
    return None


def is_current(session: Session) -> bool:
    """Whether ``session`` is still this process's live connection."""
    if session.closed or session.lost is not None:
        return False
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())
