"""
The Ray options of conveyor's runs: the options conveyor pins, a task's resources as Ray
options, the runner's defaults, and the variants of the envelope's remote function that a
started runner makes once per distinct set of options, after checking that a node can meet it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor import CrashReason
from conveyor.exceptions import ConfigError
from conveyor.runners import Attempt
from conveyor_ray._session import Session

__all__ = ["PINNED", "Variants", "check_not_pinned", "not_pinned", "ray_options_for"]

# Options conveyor pins on every Ray task: conveyor's `retries`/`crash_retries` do retries, and
# the envelope returns (outcome, value).
PINNED = {"max_retries": 0, "retry_exceptions": False, "num_returns": 2}


def check_not_pinned(where: str, options: Mapping[str, Any]) -> None:
    """Raise ConfigError if ``options`` (given as ``where``) set an option conveyor pins."""
    pinned = sorted(set(options) & set(PINNED))
    if pinned:
        msg = (
            f"RayRunner: `{where}` sets {', '.join(f'`{p}`' for p in pinned)}, which conveyor "
            "pins (Ray's own retries are off so that each run executes as often as its "
            "`retries`/`crash_retries` say); use the task's `retries` and `crash_retries`."
        )
        raise ConfigError(msg)


def not_pinned(_inst: Any, attr: Any, value: Any) -> None:
    """attrs validator: the Ray options ``value`` set none of the options conveyor pins."""
    check_not_pinned(attr.name, value)


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


def default_options(remote_options: Mapping[str, Any], in_worker: bool) -> dict[str, Any]:
    """The Ray options of a run that asks for nothing of its own."""
    options = dict(remote_options)
    if in_worker and not {"num_cpus", "num_gpus"} & set(options):
        # A flow nested in a Ray task: the outer task holds its CPU while it waits on
        # conveyor futures (Ray only frees it inside ray.get), so inner tasks ask for none.
        options["num_cpus"] = 0
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


def unsatisfiable(ray: Any, options: Mapping[str, Any], task_name: str, gcs: str) -> str | None:
    """
    Why no alive node of the cluster at ``gcs`` can ever run a task with ``options`` (Ray
    itself would wait for ever), or None if one can, or if the nodes cannot be listed.
    """
    need = _needs(options)
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    except Exception:
        return None
    for offered in nodes:
        if all(offered.get(k, 0.0) >= v for k, v in need.items()):
            return None
    offers = "; ".join(_describe_amounts(n) for n in nodes) or "no alive nodes"
    return (
        f"Task {task_name!r} asks for {_describe_amounts(need)}, but no node of the "
        f"Ray cluster at {gcs} has that much (nodes: {offers}). Lower the task's `resources`, "
        "or add a node that has them."
    )


class Variants:
    """
    The Ray options of a started runner's runs, and the envelope's remote function with each:
    the runner's defaults under the key ``""``, and each distinct set that tasks ask for
    (``resources``, ``runner_options``) under a key of its own, checked and made once.

    Raises :class:`~conveyor.ConfigError` if Ray refuses the runner's ``remote_options``.
    """

    __slots__ = ("_base", "_options", "_ray", "_remote_options", "_remotes", "_session")

    def __init__(
        self, ray: Any, base: Any, session: Session, remote_options: Mapping[str, Any]
    ) -> None:
        defaults = default_options(remote_options, session.in_worker)
        remote = base
        if defaults:
            try:
                remote = base.options(**defaults)
            except (TypeError, ValueError) as exc:
                msg = f"RayRunner: `remote_options={remote_options!r}` is invalid: {exc}"
                raise ConfigError(msg) from exc
        self._ray = ray
        self._base = base
        self._session = session
        self._remote_options = remote_options
        self._options: dict[str, dict[str, Any]] = {"": defaults}
        self._remotes: dict[str, Any] = {"": remote}

    def key(self, attempt: Attempt) -> str | None:
        """
        The key of the attempt's Ray options (``""``: the runner's defaults), checked once per
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
                check_not_pinned("runner_options", extra)
            except ConfigError as exc:
                attempt.crash(str(exc), reason=CrashReason.INVALID_OPTIONS, exc=exc)
                return None
            options.update(extra)
        key = repr(sorted(options.items()))
        if key in self._options:
            return key
        remote_options = self._remote_options
        merged = {**default_options(remote_options, self._session.in_worker), **options}
        if "resources" in options and "resources" in remote_options:
            merged["resources"] = {**remote_options["resources"], **options["resources"]}
        problem = unsatisfiable(self._ray, merged, attempt.task_name, self._session.gcs_address)
        if problem is not None:
            attempt.crash(problem, reason=CrashReason.RESOURCES_UNAVAILABLE)
            return None
        try:
            self._remotes[key] = self._base.options(**merged)
        except (TypeError, ValueError) as exc:
            attempt.crash(
                f"Ray rejected the options of {attempt.name!r} ({merged!r}): {exc}",
                reason=CrashReason.INVALID_OPTIONS,
                exc=exc,
            )
            return None
        self._options[key] = merged
        return key

    def options(self, key: str) -> dict[str, Any]:
        """The Ray options under ``key`` (a key :meth:`key` gave)."""
        return self._options[key]

    def packed(self, key: str) -> Any:
        """The envelope's remote function with the options under ``key``."""
        return self._remotes[key]
