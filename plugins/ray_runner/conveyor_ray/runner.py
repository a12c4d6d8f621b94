"""
The ``ray`` runner: conveyor task runs as Ray tasks, on a local Ray or a remote cluster.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import attrs

from conveyor.exceptions import ConfigError
from conveyor.runners import Attempt, Capabilities, ConcurrencyType, Runner
from conveyor.runners.remote import (
    PLAIN_TYPES,
    Outcome,
    function_bytes,
    pack_or_crash,
    report_outcome,
)
from conveyor_ray import _connection
from conveyor_ray._faults import classify
from conveyor_ray._results import RayResult

__all__ = ["RayRunner", "ray_options_for"]

logger = logging.getLogger("conveyor.ray")

# Options conveyor pins on every Ray task: conveyor's `retries`/`crash_retries` do retries, and
# the envelope returns (outcome, value).
_PINNED = {"max_retries": 0, "retry_exceptions": False, "num_returns": 2}

# How often the dispatcher checks that the cluster is still there while runs are in flight.
HEALTH_INTERVAL = 1.0
# While at most WATCH_LIMIT runs are in flight, each is reported as soon as it finishes. A run
# submitted by the dispatcher itself (a downstream run whose upstream runs just finished: a
# link of a chain) is waited on in Ray: ray.wait returns at once, about 0.2 ms sooner than a
# Ray callback would, which every link pays. The dispatcher waits WATCH_MIN seconds at a time,
# doubling up to WATCH_MAX while nothing finishes, so that it also sees its queue. A run that
# another thread submits gets a Ray callback instead, which hands it to the dispatcher through
# its queue at once (the dispatcher cannot be woken from a ray.wait).
WATCH_LIMIT = 8
WATCH_MIN = 0.005
WATCH_MAX = 0.02
# More runs in flight are polled in batches with ray.wait and one ray.get. A poll costs the
# driver about 0.25 ms however many runs it reports, so while runs finish, the next poll comes
# when about POLL_BATCH more should have finished at the last poll's rate (between POLL_MIN and
# POLL_BUSY_MAX seconds); while none finishes, the wait doubles up to POLL_MAX.
POLL_MIN = 0.005
POLL_BUSY_MAX = 0.02
POLL_MAX = 0.05
POLL_BATCH = 32
POLL_WINDOW = 128
# How long a worker death waits to be told apart from the loss of the whole cluster.
DEATH_SETTLE = 1.0
# A stopping runner waits for its cancelled tasks in slices this long, so signals get through.
_STOP_SLICE = 0.1

# How long fetching the outcome of a run that Ray reported finished may take.
_FETCH_TIMEOUT = 30.0

_STOP = object()
_WAKE = object()


def _check_address(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        msg = (
            f"RayRunner: `address={value!r}` is invalid; give a Ray address such as "
            "'127.0.0.1:6379' or 'ray://host:10001', or None to start a local Ray."
        )
        raise ConfigError(msg)


def _check_seconds(_inst: Any, attr: Any, value: Any) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
    if not ok:
        msg = f"RayRunner: `{attr.name}={value!r}` is invalid; give a number of seconds above 0."
        raise ConfigError(msg)


def _check_init_kwargs(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        msg = f"RayRunner: `init_kwargs={value!r}` is invalid; give a dict of ray.init() arguments."
        raise ConfigError(msg)
    if "address" in value:
        msg = (
            "RayRunner: give the cluster as `address=...`, not inside `init_kwargs`; conveyor "
            "checks and enforces `connect_timeout` on it."
        )
        raise ConfigError(msg)


def _check_remote_options(_inst: Any, attr: Any, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        msg = f"RayRunner: `{attr.name}={value!r}` is invalid; give a dict of Ray task options."
        raise ConfigError(msg)
    _check_not_pinned(attr.name, value)


def _check_not_pinned(where: str, options: Mapping[str, Any]) -> None:
    pinned = sorted(set(options) & set(_PINNED))
    if pinned:
        msg = (
            f"RayRunner: `{where}` sets {', '.join(f'`{p}`' for p in pinned)}, which conveyor "
            "pins (Ray's own retries are off so that each run executes as often as its "
            "`retries`/`crash_retries` say); use the task's `retries` and `crash_retries`."
        )
        raise ConfigError(msg)


def ray_options_for(resources: Mapping[str, float]) -> dict[str, Any]:
    """
    Ray task options for conveyor resource requests: ``CPU``/``GPU``/``memory`` (bytes) become
    ``num_cpus``/``num_gpus``/``memory``; any other name is a custom Ray resource.

    >>> ray_options_for({"CPU": 2, "GPU": 1, "memory": 1e9, "disk-fast": 1})
    {'num_cpus': 2, 'num_gpus': 1, 'memory': 1000000000.0, 'resources': {'disk-fast': 1}}
    """
    options: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for key, amount in resources.items():
        lowered = key.lower()
        if lowered in ("cpu", "cpus", "num_cpus"):
            options["num_cpus"] = amount
        elif lowered in ("gpu", "gpus", "num_gpus"):
            options["num_gpus"] = amount
        elif lowered == "memory":
            options["memory"] = amount
        else:
            custom[key] = amount
    if custom:
        options["resources"] = custom
    return options


def _needs(options: Mapping[str, Any]) -> dict[str, float]:
    need = {
        "CPU": options.get("num_cpus", 1),
        "GPU": options.get("num_gpus", 0),
        "memory": options.get("memory", 0),
        **(options.get("resources") or {}),
    }
    return {k: float(v) for k, v in need.items() if v}


def _describe_amounts(amounts: Mapping[str, float]) -> str:
    shown = []
    for key, value in sorted(amounts.items()):
        if key.startswith("node:") or key.endswith("object_store_memory"):
            continue
        shown.append(f"{key}={value:g}")
    return "{" + ", ".join(shown) + "}"


_OK = Outcome("ok")


def _crash_quietly(
    attempt: Attempt, message: str, *, reason: str, exc: BaseException | None = None
) -> None:
    """Crash ``attempt``; if that raises, log it: the dispatcher must go on for the others."""
    try:
        attempt.crash(message, reason=reason, exc=exc)
    except Exception:
        logger.exception("conveyor-ray could not crash %s.", attempt)


def _plain_array(kind: type, value: Any) -> bool:
    """
    Whether ``value`` is a NumPy array of plain numbers, which Ray carries itself: it always
    pickles, and Ray stores a large one once and hands it to the worker without a copy
    (read-only, as Ray gives every array it stores), where packing copied it six times.
    """
    return kind.__name__ == "ndarray" and kind.__module__ == "numpy" and not value.dtype.hasobject


class _Handle:
    """The Ray side of one attempt: its two return refs, and what cancel asked for."""

    __slots__ = ("cancel_requested", "force_at", "outcome", "value")

    def __init__(self) -> None:
        self.outcome: Any = None
        self.value: Any = None
        self.cancel_requested = False
        self.force_at: float | None = None


_remote_cache: dict[int, Any] = {}
_remote_lock = threading.Lock()


def _remote_function(ray: Any, session: _connection.Session) -> Any:
    """The Ray remote function of the envelope, made once per Ray session."""
    with _remote_lock:
        fn = _remote_cache.get(session.generation)
        if fn is None:
            from conveyor_ray._worker import execute_packed

            _remote_cache.clear()
            fn = ray.remote(**_PINNED)(execute_packed)
            _remote_cache[session.generation] = fn
        return fn


# The remote functions of each task function, by (session, log level, nullary, Ray options).
# They outlive the runner: a flow starts a runner of its own, and each remote function made
# anew is exported again, which costs the GCS and every worker that runs it some milliseconds.
_direct_cache: weakref.WeakKeyDictionary[Any, dict[tuple[int, int, bool, str], Any]] = (
    weakref.WeakKeyDictionary()
)


def _direct_function(
    ray: Any,
    session: _connection.Session,
    fn: Any,
    level: int,
    nullary: bool,
    options: Mapping[str, Any],
) -> Any:
    """The Ray remote function running ``fn`` directly, made once per session and options."""
    spec = (session.generation, level, nullary, repr(sorted(options.items())))
    with _remote_lock:
        try:
            made = _direct_cache.setdefault(fn, {})
        except TypeError:  # not weak-referenceable: made for this runner only
            made = {}
        remote = made.get(spec)
        if remote is None:
            from conveyor_ray._worker import direct_entry

            if any(other[0] != session.generation for other in made):
                made.clear()  # made for a Ray session that has ended
            entry = direct_entry(function_bytes(fn), level, nullary)
            remote = made[spec] = ray.remote(**_PINNED, **options)(entry)
        return remote


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

    address: str | None = attrs.field(default=None, validator=_check_address)
    init_kwargs: dict[str, Any] = attrs.field(factory=dict, validator=_check_init_kwargs)
    remote_options: dict[str, Any] = attrs.field(factory=dict, validator=_check_remote_options)
    connect_timeout: float = attrs.field(default=10.0, validator=_check_seconds)
    cancel_grace_seconds: float = attrs.field(default=2.0, validator=_check_seconds)

    _session: _connection.Session | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )
    _ray: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _base: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _remote: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _options: dict[str, dict[str, Any]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    _variants: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _direct: dict[tuple[Any, int, str, bool], Any] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    _watched: dict[Any, Attempt] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _polled: dict[Any, Attempt] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _forcing: set[Attempt] = attrs.field(factory=set, init=False, eq=False, repr=False)
    _next_health: float = attrs.field(default=0.0, init=False, eq=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, eq=False, repr=False)
    _inflight: dict[Attempt, _Handle] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _queue: queue.SimpleQueue[Any] | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )
    _dispatcher: threading.Thread | None = attrs.field(
        default=None, init=False, eq=False, repr=False
    )
    _lost: str | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _deferred: list[tuple[float, Attempt, Any, Any]] = attrs.field(
        factory=list, init=False, eq=False, repr=False
    )

    # -- lifecycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        session = _connection.acquire(
            address=self.address,
            init_kwargs=self.init_kwargs,
            connect_timeout=self.connect_timeout,
        )
        try:
            ray = _connection.import_ray()
            base = remote = _remote_function(ray, session)
            defaults = self._default_options(session)
            if defaults:
                try:
                    remote = base.options(**defaults)
                except (TypeError, ValueError) as exc:
                    msg = f"RayRunner: `remote_options={self.remote_options!r}` is invalid: {exc}"
                    raise ConfigError(msg) from exc
        except BaseException:
            _connection.release(session)
            raise
        self._session = session
        self._ray = ray
        self._base = base
        self._remote = remote
        self._options = {"": defaults}
        self._variants = {}
        self._direct = {}
        self._watched = {}
        self._polled = {}
        self._forcing = set()
        self._next_health = time.monotonic() + HEALTH_INTERVAL
        self._lost = None
        self._deferred = []
        self._queue = queue.SimpleQueue()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="conveyor-ray-dispatcher", daemon=True
        )
        self._dispatcher.start()

    def _default_options(self, session: _connection.Session) -> dict[str, Any]:
        options = dict(self.remote_options)
        if session.in_worker and not {"num_cpus", "num_gpus"} & set(options):
            # A flow nested in a Ray task: the outer task holds its CPU while it waits on
            # conveyor futures (Ray only frees it inside ray.get), so inner tasks ask for none.
            options["num_cpus"] = 0
        return options

    def on_stop(self) -> None:
        session, self._session = self._session, None
        q, self._queue = self._queue, None
        dispatcher, self._dispatcher = self._dispatcher, None
        left: list[tuple[Attempt, _Handle]] = []
        try:
            if q is not None:
                q.put(_STOP)
            if dispatcher is not None:
                dispatcher.join(10.0)
            deferred, self._deferred = self._deferred, []
            for _due, attempt, fault, exc in deferred:
                attempt.crash(fault.message, reason=fault.reason, exc=exc)
            left = self._take_inflight()
            self._stop_leftovers(left)
        except BaseException:
            # A second Ctrl-C cut the stop short: kill what is left, without waiting for it.
            left += self._take_inflight()
            for _attempt, handle in left:
                if handle.outcome is not None:
                    self._cancel_ref(handle.outcome, force=True, name="a stopped run")
            raise
        finally:
            for attempt, _handle in left:
                if not attempt.finished:
                    attempt.crash(
                        f"Runner 'ray' stopped while {attempt.name!r} was in flight; its Ray "
                        "task was cancelled.",
                        reason="runner-stopped",
                    )
            if session is not None:
                _connection.release(session)  # shuts down a Ray this runner started

    def _take_inflight(self) -> list[tuple[Attempt, _Handle]]:
        with self._lock:
            left = list(self._inflight.items())
            self._inflight.clear()
            self._watched.clear()
            self._polled.clear()
            self._forcing.clear()
        return left

    def _stop_leftovers(self, left: list[tuple[Attempt, _Handle]]) -> None:
        """Cancel what is still in flight; kill what does not stop within the grace period."""
        refs = [h.outcome for _a, h in left if h.outcome is not None]
        if not refs or self._lost or not self._ray.is_initialized():
            return
        ray = self._ray
        for attempt, handle in left:
            if handle.outcome is not None and not handle.cancel_requested:
                handle.cancel_requested = True
                self._cancel_ref(handle.outcome, force=False, name=attempt.name)
        # Wait in short slices: a signal's handler runs only between them (ray.wait blocks in
        # C++), so a second Ctrl-C during the grace period interrupts the stop at once.
        deadline = time.monotonic() + self.cancel_grace_seconds
        pending = refs
        while pending and (remaining := deadline - time.monotonic()) > 0:
            try:
                _ready, pending = ray.wait(
                    pending,
                    num_returns=len(pending),
                    timeout=min(remaining, _STOP_SLICE),
                    fetch_local=False,
                )
            except Exception:  # the cluster went away meanwhile: nothing left to cancel
                return
        for ref in pending:
            self._cancel_ref(ref, force=True, name="a stopped run")

    # -- submitting -------------------------------------------------------------------------

    def execute(self, attempt: Attempt) -> None:
        if self._session is None:  # stopping: a downstream run launched by the last reports
            attempt.crash(
                f"Runner 'ray' stopped before {attempt.name!r} could be submitted.",
                reason="runner-stopped",
            )
            return
        lost = self._lost_reason()
        if lost is not None:
            attempt.crash(
                f"The Ray cluster is gone ({lost}), so {attempt.name!r} was not submitted; "
                "conveyor does not start a new cluster behind your back.",
                reason="backend-lost",
            )
            return
        key = self._options_key(attempt)
        if key is None:
            return
        call = self._direct_call(attempt)
        remote = None
        if call is not None:
            args, kwargs = call
            try:
                remote = self._direct_remote(attempt, key, not args and not kwargs)
            except Exception:  # the task function does not pickle: packing names the culprit
                logger.debug("No direct call for %s.", attempt.name, exc_info=True)
        if remote is None:
            remote = self._packed_remote(key)
            packed = pack_or_crash(attempt, native=self._native)
            if packed is None:
                return
            payload, deps = packed
            args, kwargs = (payload, *deps), {}
        handle = _Handle()
        attempt.handle = handle
        attempt.mark_running()  # handed to Ray; it cannot tell us when a worker starts it
        try:
            outcome_ref, value_ref = remote.remote(*args, **kwargs)
        except BaseException as exc:
            fault = classify(exc, self._ray, attempt.name)
            if fault.lost or not self._ray.is_initialized():
                self._on_lost(fault.message)
                attempt.crash(fault.message, reason="backend-lost", exc=exc)
            else:
                attempt.crash(
                    f"Ray refused {attempt.name!r}: {fault.message}", reason=fault.reason, exc=exc
                )
            if not isinstance(exc, Exception):
                raise
            return
        with self._lock:
            handle.outcome, handle.value = outcome_ref, value_ref
            inflight = self._inflight
            wake = not inflight  # the dispatcher may be waiting on its queue alone
            inflight[attempt] = handle
            polled = self._polled
            called = False
            if polled or len(inflight) > WATCH_LIMIT:
                wake = wake or not polled  # the dispatcher starts polling
                polled[outcome_ref] = attempt
            elif threading.current_thread() is self._dispatcher:
                self._watched[outcome_ref] = attempt
            else:
                called = True
            cancel = handle.cancel_requested
        q = self._queue
        if wake and q is not None:
            q.put(_WAKE)
        if cancel:
            self._cancel_ref(outcome_ref, force=False, name=attempt.name)
            self._force_later(attempt, handle)
        if called:
            outcome_ref._on_completed(functools.partial(self._on_completed, attempt))

    def _on_completed(self, attempt: Attempt, data: Any) -> None:
        # Runs on a Ray thread: hand over, do the work on the dispatcher.
        q = self._queue
        if q is not None:
            q.put((attempt, data))

    def _native(self, value: Any) -> Any:
        if isinstance(value, RayResult) and value.session is self._session:
            return value.object_ref
        return None

    def _direct_call(self, attempt: Attempt) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """
        The run's arguments as Ray task arguments, if each is a plain value or a result of this
        session (passed as its ObjectRef); None if the run must be packed.
        """
        args, kwargs = attempt.args, attempt.kwargs
        swapped = False
        for value in (*args, *kwargs.values()):
            kind = type(value)
            if kind in PLAIN_TYPES or _plain_array(kind, value):
                continue
            if kind is RayResult and value.session is self._session:
                swapped = True
                continue
            return None
        if not swapped:
            return args, kwargs
        return tuple(self._native(v) or v for v in args), {
            k: self._native(v) or v for k, v in kwargs.items()
        }

    # No upstream_handle(): downstream runs wait until their upstream runs are final. Submitting
    # them at once (with the upstream's refs as arguments) was measured to save a driver round
    # trip per link, but ray.cancel() of a task whose arguments are still pending crashes the
    # driver in Ray 2.60 (reference_counter.cc "Check failed: submitted_task_ref_count > 0").

    def _options_key(self, attempt: Attempt) -> str | None:
        """
        A key for the attempt's Ray options (``""``: the runner's defaults), checked once per
        key; None if the options are refused, and the attempt crashed.
        """
        resources = attempt.resources
        extra = attempt.runner_options
        if not resources and not extra:
            return ""
        options: dict[str, Any] = {}
        if resources:
            options.update(ray_options_for(resources))
        if extra:
            try:
                _check_not_pinned("runner_options", extra)
            except ConfigError as exc:
                attempt.crash(str(exc), reason="invalid-options", exc=exc)
                return None
            options.update(extra)
        key = repr(sorted(options.items()))
        if key in self._options:
            return key
        merged = {**self._default_options(self._session_or_fail()), **options}
        if "resources" in options and "resources" in self.remote_options:
            merged["resources"] = {**self.remote_options["resources"], **options["resources"]}
        problem = self._unsatisfiable(merged, attempt)
        if problem is not None:
            attempt.crash(problem, reason="unschedulable")
            return None
        try:
            self._variants[key] = self._base.options(**merged)
        except (TypeError, ValueError) as exc:
            attempt.crash(
                f"Ray rejected the options of {attempt.name!r} ({merged!r}): {exc}",
                reason="invalid-options",
                exc=exc,
            )
            return None
        self._options[key] = merged
        return key

    def _packed_remote(self, key: str) -> Any:
        return self._variants[key] if key else self._remote

    def _direct_remote(self, attempt: Attempt, key: str, nullary: bool) -> Any:
        """The remote function running the attempt's task function directly, made once."""
        level = logging.getLogger().getEffectiveLevel()
        index = (attempt.fn, level, key, nullary)
        remote = self._direct.get(index)
        if remote is None:
            session = self._session_or_fail()
            options = self._options[key]
            remote = _direct_function(self._ray, session, attempt.fn, level, nullary, options)
            self._direct[index] = remote
        return remote

    def _session_or_fail(self) -> _connection.Session:
        session = self._session
        assert session is not None
        return session

    def _unsatisfiable(self, options: Mapping[str, Any], attempt: Attempt) -> str | None:
        need = _needs(options)
        try:
            nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        except Exception:
            return None
        for offered in nodes:
            if all(offered.get(k, 0.0) >= v for k, v in need.items()):
                return None
        offers = "; ".join(_describe_amounts(n) for n in nodes) or "no alive nodes"
        return (
            f"Task {attempt.task_name!r} asks for {_describe_amounts(need)}, but no node of the "
            f"Ray cluster at {self._session_or_fail().gcs_address} has that much (nodes: "
            f"{offers}). Lower the task's `resources`, or add a node that has them."
        )

    # -- cancelling -------------------------------------------------------------------------

    def cancel(self, attempt: Attempt) -> bool:
        handle = attempt.handle
        if not isinstance(handle, _Handle):
            return True  # never handed to Ray
        with self._lock:
            handle.cancel_requested = True
            ref = handle.outcome
        if ref is None:
            return True  # submit is under way; it cancels right after
        self._cancel_ref(ref, force=False, name=attempt.name)
        self._force_later(attempt, handle)
        return True

    def _force_later(self, attempt: Attempt, handle: _Handle) -> None:
        """Have the dispatcher kill the attempt's worker if it has not stopped after the grace."""
        with self._lock:
            if attempt not in self._inflight:
                return
            handle.force_at = time.monotonic() + self.cancel_grace_seconds
            self._forcing.add(attempt)
        q = self._queue
        if q is not None:
            q.put(_WAKE)

    def _cancel_ref(self, ref: Any, *, force: bool, name: str) -> None:
        try:
            self._ray.cancel(ref, force=force)
        except Exception:
            logger.debug("ray.cancel(force=%s) of %s raised.", force, name, exc_info=True)

    # -- the dispatcher thread --------------------------------------------------------------

    def _dispatch(self) -> None:
        q = self._queue
        assert q is not None
        polling = False
        poll = POLL_MIN
        last_poll = next_poll = 0.0
        watch, watching = WATCH_MIN, 0
        while True:
            timeout = self._next_wakeup()
            if polling:
                wait = max(0.0, next_poll - time.monotonic())
                timeout = wait if timeout is None else min(timeout, wait)
            with self._lock:
                watched = list(self._watched)
            if len(watched) != watching:  # runs came or went: wait in short steps again
                watch, watching = WATCH_MIN, len(watched)
            items: list[Any] = []
            step = watch if timeout is None else min(timeout, watch)
            found = self._watch(watched, step) if watched else None
            watch = WATCH_MIN if found else min(watch * 2, WATCH_MAX)
            try:
                if found is None:  # nothing to wait on in Ray, or Ray refused: the queue
                    items.append(q.get(timeout=step if watched else timeout))
                while True:
                    items.append(q.get_nowait())
            except queue.Empty:
                pass
            for item in items:
                if item is _STOP:
                    return
                if type(item) is tuple:  # a Ray callback's run
                    self._finish(*item)
            now = time.monotonic()
            if not self._polled:
                polling = False
            elif not polling:  # more than WATCH_LIMIT runs are in flight: first poll soon
                polling = True
                poll = POLL_MIN
                last_poll, next_poll = now, now + POLL_MIN
            elif now >= next_poll:
                done, full = self._harvest()
                left = len(self._polled)
                if full and left:  # the whole window had finished: more may have
                    poll = 0.0
                elif done:  # until about POLL_BATCH more (or all the rest) should be done
                    poll = min(POLL_BATCH, max(left, 1)) * (now - last_poll) / done
                    poll = min(max(poll, POLL_MIN), POLL_BUSY_MAX)
                else:
                    poll = min(max(poll, POLL_MIN) * 2, POLL_MAX)
                last_poll, next_poll = now, now + poll
            if self._housekeeping_due():
                self._housekeeping()

    def _watch(self, refs: list[Any], step: float) -> bool | None:
        """
        Wait up to ``step`` seconds in Ray for one of the watched runs to finish, and report
        every one that has; whether any had. None if Ray refused the wait (it is going away; the
        health check reports it).
        """
        ray = self._ray
        try:
            ready, rest = ray.wait(refs, num_returns=1, timeout=step, fetch_local=False)
            if ready and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
                ready += more
        except BaseException:
            return None
        if ready:
            self._report_ready(ready, self._watched)
        return bool(ready)

    def _finish(self, attempt: Attempt, data: Any) -> None:
        with self._lock:
            handle = self._inflight.pop(attempt, None)
            if handle is None:  # already crashed as lost, or stopped
                return
            self._watched.pop(handle.outcome, None)
            self._polled.pop(handle.outcome, None)
            self._forcing.discard(attempt)
        try:
            self._report(attempt, handle, data)
        except Exception as exc:  # a bug here must not leave the run in flight for ever
            logger.exception("conveyor-ray could not report %s.", attempt)
            if not attempt.finished:
                _crash_quietly(
                    attempt,
                    f"conveyor-ray could not report the outcome of {attempt.name!r}: "
                    f"{type(exc).__name__}: {exc}",
                    reason="backend-error",
                    exc=exc,
                )

    def _harvest(self) -> tuple[int, bool]:
        """
        Report the polled runs that have finished, fetching their outcomes in one batch. The
        oldest POLL_WINDOW runs are asked first; all of them only when none of those finished.
        Return how many were reported, and whether all that were asked had finished.
        """
        with self._lock:
            polled = self._polled
            window = list(itertools.islice(polled, POLL_WINDOW))
            rest = len(polled) > len(window)
        ready = self._ready(window)
        if not ready and rest:
            with self._lock:
                window = list(self._polled)
            ready = self._ready(window)
        if not ready:
            return 0, False
        self._report_ready(ready, self._polled)
        return len(ready), len(ready) == len(window)

    def _report_ready(self, ready: list[Any], table: dict[Any, Attempt]) -> None:
        """Fetch the outcomes of the finished runs ``ready`` (keys of ``table``), and report them."""
        try:
            outcomes = self._ray.get(ready, timeout=_FETCH_TIMEOUT)
        except BaseException:  # one of them holds an error: fetch them one by one
            outcomes = [self._fetch_outcome(ref) for ref in ready]
        with self._lock:
            attempts = [table.get(ref) for ref in ready]
        for attempt, data in zip(attempts, outcomes, strict=True):
            if attempt is not None:
                self._finish(attempt, data)

    def _ready(self, refs: list[Any]) -> list[Any]:
        if not refs:
            return []
        try:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        except BaseException:
            return []  # Ray is going away; the health check reports it
        return list(ready)

    def _fetch_outcome(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref, timeout=_FETCH_TIMEOUT)
        except BaseException as exc:  # SystemExit, if Ray shuts down meanwhile
            return exc

    def _next_wakeup(self) -> float | None:
        with self._lock:
            if not self._inflight and not self._deferred:
                return None
            due = [self._next_health]
            due.extend(
                h.force_at for a in self._forcing if (h := self._inflight.get(a)) and h.force_at
            )
        if self._deferred:
            due.append(min(d[0] for d in self._deferred))
        return max(0.0, min(due) - time.monotonic())

    def _housekeeping_due(self) -> bool:
        if not self._inflight and not self._deferred:
            return False
        wait = self._next_wakeup()
        return wait is not None and wait <= 0.0

    def _housekeeping(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = []
            for attempt in list(self._forcing):
                handle = self._inflight.get(attempt)
                if handle is None or handle.force_at is None:
                    self._forcing.discard(attempt)
                elif handle.force_at <= now:
                    handle.force_at = None
                    self._forcing.discard(attempt)
                    due.append((attempt, handle))
        for attempt, handle in due:
            try:
                ready, _ = self._ray.wait([handle.outcome], timeout=0, fetch_local=False)
            except BaseException:
                ready = []
            if not ready:
                logger.info(
                    "%s did not stop within %g s of its cancel; killing its Ray worker.",
                    attempt.name,
                    self.cancel_grace_seconds,
                )
                self._cancel_ref(handle.outcome, force=True, name=attempt.name)
        lost = None
        if now >= self._next_health:
            self._next_health = now + HEALTH_INTERVAL
            lost = self._lost_reason(check_gcs=True)
            if lost is not None:
                self._on_lost(lost)
        settled = [d for d in self._deferred if d[0] <= now or lost is not None]
        self._deferred = [d for d in self._deferred if d not in settled]
        for _due, attempt, fault, exc in settled:
            if lost is not None:
                _crash_quietly(attempt, f"{lost} ({fault.message})", reason="backend-lost", exc=exc)
            else:
                _crash_quietly(attempt, fault.message, reason=fault.reason, exc=exc)

    def _lost_reason(self, check_gcs: bool = False) -> str | None:
        if self._lost is not None:
            return self._lost
        session = self._session
        if session is None:
            return None
        if session.lost is not None:
            return session.lost
        ray = self._ray
        if ray is None or not ray.is_initialized():
            return "Ray was shut down in this process"
        if check_gcs and not _connection.gcs_alive(session.gcs_address):
            return f"the Ray cluster's GCS at {session.gcs_address} no longer answers"
        return None

    def _on_lost(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            logger.error("conveyor lost its Ray cluster: %s.", why)
        session = self._session
        if session is not None:
            _connection.mark_lost(session, why)
        for attempt, _handle in self._take_inflight():
            _crash_quietly(
                attempt,
                f"The Ray cluster was lost while {attempt.name!r} was in flight: {why}.",
                reason="backend-lost",
            )

    def _mark_handled(self, handle: _Handle) -> None:
        # The value ref holds the same error; fetch it once so Ray does not log it as unhandled.
        try:
            self._ray.get(handle.value, timeout=0)
        except BaseException:
            pass

    def _report(self, attempt: Attempt, handle: _Handle, data: Any) -> None:
        if attempt.finished:
            return  # timed out or cancelled: the engine already decided
        if (
            type(data) is list
            and len(data) == 3
            and (data[0] is None or isinstance(data[0], Outcome))
        ):
            outcome, inlined, small = data
            if outcome is None:  # ok, and no log records
                outcome = _OK
            value: Any = None
            if inlined:
                value = small
            elif outcome.status == "ok":
                value = RayResult(handle.value, attempt.name, self._session_or_fail())
            report_outcome(attempt, outcome, value)
            return
        if isinstance(data, BaseException):
            self._mark_handled(handle)
            fault = classify(data, self._ray, attempt.name)
            if not fault.lost and not fault.cancelled:
                # A worker that died with the whole cluster is the cluster's loss, not its own.
                lost = self._lost_reason(check_gcs=True)
                if lost is not None:
                    fault = attrs.evolve(fault, lost=True, message=f"{lost} ({fault.message})")
                elif fault.reason == "worker-died" and not self._lost:
                    # Workers often die a moment before the GCS when a whole cluster goes
                    # down: decide once the GCS had time to show it.
                    self._deferred.append((time.monotonic() + DEATH_SETTLE, attempt, fault, data))
                    return
            if fault.lost:
                self._on_lost(fault.message)
                attempt.crash(fault.message, reason="backend-lost", exc=data)
                return
            if fault.cancelled:
                message = f"{attempt.name!r} was cancelled in Ray, not by conveyor."
                attempt.crash(message, reason="cancelled-externally", exc=data)
                return
            attempt.crash(fault.message, reason=fault.reason, exc=data)
            return
        attempt.crash(
            f"Ray returned {type(data).__name__} instead of conveyor's outcome for "
            f"{attempt.name!r}.",
            reason="backend-error",
        )
