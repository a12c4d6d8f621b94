"""
Every Ray internal conveyor-ray relies on, in one place: the environment flags Ray reads when it
is imported, the private module attributes conveyor patches or reads, a private ``ray.init``
argument, the one private method it calls, and the texts of the Ray errors it recognises.

Each was checked against Ray :data:`CHECKED_WITH` (``pip show ray``) and says why no public API
serves. ``tests/ray/test_upstream.py`` fails, naming the internal, when one disappears or
changes shape. No other module of conveyor-ray touches a private name of ``ray``.

One behaviour of Ray's, not a name, is relied on elsewhere: a public ``ray.cancel`` from another
process is run by the task's owner on the thread that handles its task replies (see
:mod:`conveyor_ray._cancel`); ``test_early_exit_with_10k_runs_in_flight`` in
``tests/ray/test_staying_power.py`` fails when it no longer protects the driver.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = [
    "CHECKED_WITH",
    "ENV_ALWAYS",
    "ENV_LOCAL",
    "NODE_IP_KWARG",
    "NOT_STARTED_TEXT",
    "OWNER_UNKNOWN_TEXT",
    "TEMP_DIR_KWARG",
    "env",
    "import_ray",
    "in_worker",
    "loopback",
    "no_auto_connect",
    "on_completed",
]

#: The Ray version every internal below was checked against.
CHECKED_WITH = "2.60.0"

# Environment flags, set while conveyor imports Ray and starts or joins it (the processes of a
# local Ray that conveyor starts inherit them; the driver's own environment is restored after).
# Ray reads them once, when it is imported or when its processes start, so no call sets them.
#   RAY_ENABLE_AUTO_CONNECT=0   no Ray call starts a cluster on its own (see no_auto_connect)
#   RAY_USAGE_STATS_ENABLED=0   no usage reporting
ENV_ALWAYS = {"RAY_ENABLE_AUTO_CONNECT": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# Only for a local Ray that conveyor starts:
#   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   the node binds 127.0.0.1, not the outside address
#                                         (it even rewrites 127.0.0.1 in an address otherwise)
#   RAY_task_oom_retries=0                Ray retries OOM-killed tasks without end otherwise
ENV_LOCAL = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_task_oom_retries": "0"}

#: ``ray.init``'s private ``_node_ip_address`` argument (Ray 2.60.0). A user who gives it in
#: ``init_kwargs`` chose the node's address, so conveyor does not force loopback. Read only.
NODE_IP_KWARG = "_node_ip_address"

#: ``ray.init``'s private ``_temp_dir`` argument (Ray 2.60.0): the folder of a local Ray's
#: sessions, sockets and logs. conveyor gives a local Ray it starts a private one (see
#: :mod:`conveyor_ray._private_dir`); no public argument or setting places it per start.
TEMP_DIR_KWARG = "_temp_dir"

#: Texts of Ray errors that mean Ray itself is gone, which only the message tells from other
#: errors of the same class (Ray 2.60.0): a ``ValueError`` from ``ray.get`` of an object whose
#: owner went with a shut-down Ray, and the ``RaySystemError`` of any call once Ray is shut down.
OWNER_UNKNOWN_TEXT = "owner is unknown"
NOT_STARTED_TEXT = "not been started"


@contextmanager
def env(values: Mapping[str, str]) -> Iterator[None]:
    """Set the environment ``values`` for the block, and restore what was there after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def import_ray() -> Any:
    """
    Import Ray with auto-connect off, so that no Ray call ever starts a cluster on its own.
    """
    with env(ENV_ALWAYS):
        import ray  # deferred: `import conveyor_ray` must not import ray; starting a runner does
    no_auto_connect(ray)
    return ray


def no_auto_connect(ray: Any) -> None:
    """
    Turn off Ray's auto-connect where Ray keeps it.

    Internal: ``ray._private.auto_init_hook.enable_auto_connect``, a module-level bool that
    ``auto_init_ray()`` reads before every wrapped call (``ray.put``, ``.remote()``, ...).
    Why: Ray reads ``RAY_ENABLE_AUTO_CONNECT`` once, when it is imported; if the user imported
    Ray before conveyor, only this flag keeps a ``.remote()`` after ``ray.shutdown()`` from
    starting a new local cluster. No public API turns auto-connect off.
    """
    hook: Any = getattr(getattr(ray, "_private", None), "auto_init_hook", None)
    if hook is not None and getattr(hook, "enable_auto_connect", False):
        hook.enable_auto_connect = False


@contextmanager
def loopback(ray: Any) -> Iterator[None]:
    """
    Make a Ray started in the block use 127.0.0.1 for this node.

    Internal: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``, the module-level bool that
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` sets when Ray is imported; with it False,
    ``ray._private.services.get_node_ip_address()`` answers the loopback address. Why: Ray has
    already read the variable when conveyor starts a local Ray, so setting it (ENV_LOCAL) is not
    enough for the driver; no public ``ray.init`` argument binds the node to loopback (the
    private ``_node_ip_address`` is the user's to give).
    """
    constants: Any = getattr(getattr(ray, "_private", None), "ray_constants", None)
    old = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if constants is not None and old is not None:
            constants.ENABLE_RAY_CLUSTER = old


def in_worker(ray: Any) -> bool:
    """
    Whether this process is a Ray worker (a flow nested in a Ray task), not a driver.

    Internal: ``ray._private.worker.global_worker.mode`` compared with
    ``ray._private.worker.WORKER_MODE``. Why: the public ``RuntimeContext.get_task_id()`` tells
    them apart only by logging a warning each time a driver calls it; no public call answers
    quietly.
    """
    try:
        worker = ray._private.worker
        return bool(worker.global_worker.mode == worker.WORKER_MODE)
    except Exception:
        return False


def on_completed(ref: Any, callback: Callable[[Any], None]) -> None:
    """
    Have Ray call ``callback`` with the value of ``ref`` (or the error it holds, as a value)
    on one of its threads once ``ref`` is ready. The caller holds ``ref`` until then: Ray's core
    aborts the process when an object it calls back for has been released.

    Internal: ``ObjectRef._on_completed(callback)``. Why: the public ``ObjectRef.future()``
    calls this very method and wraps it in a ``concurrent.futures.Future`` per run, which cost
    about 4 µs more driver CPU per run (measured: 0.3 against 4.4 µs), about 1 % of a no-op
    Ray task on two cores; the runner reports every run a user's code submits this way.
    """
    ref._on_completed(callback)
