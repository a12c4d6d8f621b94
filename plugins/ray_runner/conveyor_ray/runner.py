"""
The ``ray`` runner: conveyor task runs as Ray tasks, on a local Ray or a remote cluster.

The runner holds its options and starts, submits and cancels; the rest lives beside it:
:mod:`~conveyor_ray._session` (the process's connection to Ray), :mod:`~conveyor_ray._options`
(Ray options and their remote functions), :mod:`~conveyor_ray._functions` (which remote
function a run calls), :mod:`~conveyor_ray._dispatcher` (the runs in flight and the thread
that reports them) and :mod:`~conveyor_ray._internals` (every Ray internal used).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from conveyor import CrashReason, validators
from conveyor.exceptions import ConfigError
from conveyor.runners import Attempt, Capabilities, ConcurrencyType, Runner
from conveyor.runners.remote import pack_or_crash
from conveyor_ray._cancel import Handle
from conveyor_ray._dispatcher import Dispatcher
from conveyor_ray._faults import classify
from conveyor_ray._functions import (
    cancel_helper,
    direct_args,
    direct_function,
    native,
    packed_function,
)
from conveyor_ray._internals import import_ray
from conveyor_ray._options import Variants, not_pinned, ray_options_for
from conveyor_ray._session import Session, acquire, release

__all__ = ["RayRunner", "ray_options_for"]

logger = logging.getLogger("conveyor.ray")


def _no_address_inside(_inst: Any, _attr: Any, value: Any) -> None:
    """attrs validator: ``init_kwargs`` leave the cluster's address to ``address``."""
    if "address" in value:
        msg = (
            "RayRunner: give the cluster as `address=...`, not inside `init_kwargs`; conveyor "
            "checks and enforces `connect_timeout` on it."
        )
        raise ConfigError(msg)


@attrs.define(kw_only=True, eq=True)
class RayRunner(Runner):
    """
    Runs each task run as a Ray task, on a local Ray or on the cluster at ``address``.

    Options:

    - ``address``: a cluster to join (``"127.0.0.1:6379"``, ``"ray://host:10001"``). Without
      it, the runner starts a local Ray bound to 127.0.0.1, with one CPU per core, no dashboard
      and no usage reporting, and shuts it down when the last runner using it stops. If this
      process is already connected to Ray, the runner uses that connection and never shuts it
      down.
    - ``init_kwargs``: more arguments for ``ray.init()`` (``num_cpus``, ``runtime_env``, ...).
    - ``remote_options``: default Ray options of every task (``num_cpus``, ``resources``,
      ``runtime_env``, ...); a task's ``resources`` and ``runner_options`` override them.
      ``max_retries``, ``retry_exceptions`` and ``num_returns`` are pinned by conveyor.
    - ``connect_timeout``: seconds to join ``address`` before
      :class:`~conveyor.BackendUnavailable` (conveyor enforces it; ``ray.init`` would hang).
    - ``cancel_grace_seconds``: how long a cancelled or timed-out Ray task may take to stop
      after its ``KeyboardInterrupt`` before conveyor kills its worker (``force=True``).

    Results stay in Ray's object store: a future passed to another task travels as its
    ``ObjectRef``, and the driver fetches a value only when asked (``result()``).
    """

    name = "ray"
    concurrency = ConcurrencyType.PARALLEL
    capabilities = Capabilities(
        hard_timeouts=True,
        cancel_running=True,
        native_futures=True,
        resources=True,
        isolation=True,
    )

    address: str | None = attrs.field(
        default=None,
        validator=validators.address(
            example=("127.0.0.1:6379", "ray://host:10001"), none_means="to start a local Ray"
        ),
    )
    init_kwargs: dict[str, Any] = attrs.field(
        factory=dict,
        validator=[validators.mapping(what="a dict of ray.init() arguments"), _no_address_inside],
    )
    remote_options: dict[str, Any] = attrs.field(
        factory=dict,
        validator=[validators.mapping(what="a dict of Ray task options"), not_pinned],
    )
    connect_timeout: float = attrs.field(default=10.0, validator=validators.seconds())
    cancel_grace_seconds: float = attrs.field(default=2.0, validator=validators.seconds())

    _session: Session | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _ray: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _variants: Variants | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _direct: dict[tuple[Any, int, str, bool], Any] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    # Kept after a stop, so that a late cancel still reaches Ray.
    _dispatcher: Dispatcher | None = attrs.field(default=None, init=False, eq=False, repr=False)

    # -- lifecycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        session = acquire(
            address=self.address,
            init_kwargs=self.init_kwargs,
            connect_timeout=self.connect_timeout,
        )
        try:
            ray = import_ray()
            variants = Variants(ray, packed_function(ray, session), session, self.remote_options)
            helper = cancel_helper(ray, session)
        except BaseException:
            release(session)
            raise
        self._session = session
        self._ray = ray
        self._variants = variants
        self._direct = {}
        self._dispatcher = Dispatcher(ray, session, self.cancel_grace_seconds, helper)
        self._dispatcher.start()

    def on_stop(self) -> None:
        session, self._session = self._session, None
        try:
            if self._dispatcher is not None:
                self._dispatcher.stop()
        finally:
            if session is not None:
                release(session)  # shuts down a Ray this runner started

    # -- submitting -------------------------------------------------------------------------

    def execute(self, attempt: Attempt) -> None:
        session = self._session
        if session is None:  # stopping: a downstream run launched by the last reports
            attempt.crash(
                f"Runner 'ray' stopped before {attempt.name!r} could be submitted.",
                reason=CrashReason.RUNNER_STOPPED,
            )
            return
        dispatcher, variants = self._dispatcher, self._variants
        assert dispatcher is not None and variants is not None
        lost = dispatcher.lost_reason()
        if lost is not None:
            attempt.crash(
                f"The Ray cluster is gone ({lost}), so {attempt.name!r} was not submitted; "
                "conveyor does not start a new cluster behind your back.",
                reason=CrashReason.BACKEND_LOST,
            )
            return
        key = variants.key(attempt)
        if key is None:
            return
        call = direct_args(attempt, session)
        remote = None
        if call is not None:
            args, kwargs = call
            try:
                remote = self._direct_remote(attempt, session, key, not args and not kwargs)
            except Exception:  # the task function does not pickle: packing names the culprit
                logger.debug("No direct call for %s.", attempt.name, exc_info=True)
        if remote is None:
            remote = variants.packed(key)
            packed = pack_or_crash(attempt, native=self._native)
            if packed is None:
                return
            payload, deps = packed
            args, kwargs = (payload, *deps), {}
        handle = Handle()
        attempt.handle = handle
        attempt.mark_running()  # handed to Ray; it cannot tell us when a worker starts it
        try:
            outcome_ref, value_ref = remote.remote(*args, **kwargs)
        except BaseException as exc:
            fault = classify(exc, self._ray, attempt.name)
            if fault.lost or not self._ray.is_initialized():
                dispatcher.on_lost(fault.message)
                attempt.crash(fault.message, reason=CrashReason.BACKEND_LOST, exc=exc)
            else:
                attempt.crash(
                    f"Ray refused {attempt.name!r}: {fault.message}", reason=fault.reason, exc=exc
                )
            if not isinstance(exc, Exception):
                raise
            return
        dispatcher.track(attempt, handle, outcome_ref, value_ref)

    # No upstream_handle(): downstream runs wait until their upstream runs are final. Submitting
    # them at once (with the upstream's refs as arguments) was measured to save a driver round
    # trip per link, but ray.cancel() of a task whose arguments are still pending crashes the
    # driver in Ray 2.60 (Ray's own src/ray/core_worker/reference_counter.cc: "Check failed:
    # it->second.submitted_task_ref_count > 0").

    def _native(self, value: Any) -> Any:
        return native(value, self._session)

    def _direct_remote(self, attempt: Attempt, session: Session, key: str, nullary: bool) -> Any:
        """The remote function running the attempt's task function directly, made once."""
        level = logging.getLogger().getEffectiveLevel()
        index = (attempt.fn, level, key, nullary)
        remote = self._direct.get(index)
        if remote is None:
            assert self._variants is not None
            options = self._variants.options(key)
            remote = direct_function(self._ray, session, attempt.fn, level, nullary, options)
            self._direct[index] = remote
        return remote

    # -- cancelling -------------------------------------------------------------------------

    def cancel(self, attempt: Attempt) -> bool:
        handle = attempt.handle
        if not isinstance(handle, Handle):
            return True  # never handed to Ray
        if self._dispatcher is not None:
            self._dispatcher.cancel(attempt, handle)
        return True
