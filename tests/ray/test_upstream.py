"""
The upstream contract: every Ray internal that conveyor-ray relies on (all in
``conveyor_ray/_internals.py``) is still there, with the shape conveyor uses. Each test names
the internal it pins, so a Ray upgrade that breaks one fails here by name, not deep in a flow.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_ray")

import ray

import conveyor_ray
from conveyor.testing import wait_until
from conveyor_ray import _internals
from tests.ray import _tasks as rt
from tests.ray._support import worker_env

BOUND = 60.0


def _changed(internal: str, problem: str) -> str:
    """The failure message: which internal changed, how, and where conveyor uses it."""
    return (
        f"Ray {ray.__version__} changed `{internal}` (conveyor-ray checked it against Ray "
        f"{_internals.CHECKED_WITH}): {problem}. conveyor_ray/_internals.py relies on it."
    )


class TestPrivateModules:
    def test_auto_init_hook_enable_auto_connect(self) -> None:
        """`ray._private.auto_init_hook.enable_auto_connect` is a bool that auto_init_ray reads."""
        internal = "ray._private.auto_init_hook.enable_auto_connect"
        hook = getattr(ray._private, "auto_init_hook", None)
        assert hook is not None, _changed(internal, "the module is gone")
        flag = getattr(hook, "enable_auto_connect", None)
        assert isinstance(flag, bool), _changed(internal, f"it is {flag!r}, not a bool")
        reader = getattr(hook, "auto_init_ray", None)
        assert reader is not None, _changed(internal, "auto_init_ray, which read it, is gone")
        names = reader.__code__.co_names
        assert "enable_auto_connect" in names, _changed(
            internal, "auto_init_ray no longer reads it"
        )

    def test_no_auto_connect_keeps_ray_from_starting(self, tmp_path: Path) -> None:
        """
        With `ray._private.auto_init_hook.enable_auto_connect` turned off (and the variable
        not set), a Ray call in a fresh process starts no cluster; it raises the error whose
        text conveyor reads as "Ray is gone" (`not been started`).
        """
        code = textwrap.dedent(
            """
            import json
            import ray
            from conveyor_ray._internals import NOT_STARTED_TEXT, no_auto_connect

            before = ray._private.auto_init_hook.enable_auto_connect
            no_auto_connect(ray)
            try:
                ray.put(1)
                error = None
            except ray.exceptions.RaySystemError as exc:
                error = str(exc)
            started = ray.is_initialized()
            ray.shutdown()
            print("RESULT " + json.dumps({"before": before, "error": error, "started": started,
                                          "text": NOT_STARTED_TEXT}))
            """
        )
        env = worker_env()
        env.pop("RAY_ENABLE_AUTO_CONNECT", None)  # Ray's default: auto-connect on at import
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, proc.stderr[-3000:]
        out = json.loads(lines[0][len("RESULT ") :])
        internal = "ray._private.auto_init_hook.enable_auto_connect"
        assert out["before"] is True, _changed(
            internal, "RAY_ENABLE_AUTO_CONNECT unset no longer sets it"
        )
        assert not out["started"], _changed(internal, "turning it off no longer stops auto-connect")
        assert out["error"] is not None and out["text"] in out["error"], _changed(
            "RaySystemError('Ray has not been started yet')",
            f"a call without Ray said {out['error']!r}",
        )

    def test_ray_constants_enable_ray_cluster(self) -> None:
        """
        `ray._private.ray_constants.ENABLE_RAY_CLUSTER` is the bool set from
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER that the node-address lookup reads; loopback() sets it
        False and puts it back.
        """
        internal = "ray._private.ray_constants.ENABLE_RAY_CLUSTER"
        constants = getattr(ray._private, "ray_constants", None)
        assert constants is not None, _changed(internal, "the module is gone")
        before = getattr(constants, "ENABLE_RAY_CLUSTER", None)
        assert isinstance(before, bool), _changed(internal, f"it is {before!r}, not a bool")
        variable = getattr(constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None)
        assert variable == "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", _changed(
            internal, f"it is set from {variable!r}"
        )
        lookup = ray._private.services.get_node_ip_address
        assert "ENABLE_RAY_CLUSTER" in lookup.__code__.co_names, _changed(
            internal, "ray._private.services.get_node_ip_address no longer reads it"
        )
        with _internals.loopback(ray):
            assert constants.ENABLE_RAY_CLUSTER is False
        assert constants.ENABLE_RAY_CLUSTER is before

    def test_worker_global_worker_mode(self, ray_address: str) -> None:
        """
        `ray._private.worker.global_worker.mode` equals `ray._private.worker.WORKER_MODE` in a
        Ray task and not in the driver, so conveyor tells a nested flow from a driver.
        """
        internal = "ray._private.worker.global_worker.mode / WORKER_MODE"
        worker = ray._private.worker
        assert hasattr(worker, "WORKER_MODE"), _changed(internal, "WORKER_MODE is gone")
        assert hasattr(worker.global_worker, "mode"), _changed(internal, "mode is gone")
        assert not _internals.in_worker(ray), _changed(internal, "the driver reads as a worker")
        remote = ray.remote(num_cpus=0, max_retries=0)(rt.in_ray_worker)
        in_task = ray.get(remote.remote(), timeout=BOUND)
        assert in_task is True, _changed(internal, "a Ray task no longer reads as a worker")


class TestPrivateCalls:
    def test_object_ref_on_completed(self, ray_address: str) -> None:
        """
        `ObjectRef._on_completed(callback)` calls back once with the value of a ready object,
        and with the error (as a value, a RayTaskError) of a failed task.
        """
        internal = "ObjectRef._on_completed"
        assert callable(getattr(ray.ObjectRef, "_on_completed", None)), _changed(
            internal, "the method is gone"
        )
        got: list[Any] = []
        callback = got.append

        ready = ray.put(41)  # held until the callback ran: Ray's core aborts otherwise
        _internals.on_completed(ready, callback)
        wait_until(lambda: got, BOUND, what="the callback of a ready object")
        assert got == [41], _changed(internal, f"the callback got {got!r}, not [41]")
        failing = ray.remote(num_cpus=0, max_retries=0)(rt.fail_plainly).remote()
        _internals.on_completed(failing, callback)
        wait_until(lambda: len(got) == 2, BOUND, what="the callback of a failed task")
        error = got[1]
        assert isinstance(error, ray.exceptions.RayTaskError), _changed(
            internal, f"a failed task called back with {type(error).__name__}, not RayTaskError"
        )
        try:
            ray.get(failing, timeout=BOUND)  # so that Ray does not log the error as unhandled
        except ray.exceptions.RayTaskError:
            pass

    def test_init_reads_node_ip_address(self) -> None:
        """`ray.init` still takes the private `_node_ip_address` from its keyword arguments."""
        internal = f"ray.init({_internals.NODE_IP_KWARG}=...)"
        init = inspect.unwrap(ray.init)
        assert _internals.NODE_IP_KWARG in init.__code__.co_consts, _changed(
            internal, "ray.init no longer reads it"
        )

    def test_owner_unknown_text_is_still_ray_s(self) -> None:
        """The text of Ray's "owner is unknown" error, which classify reads, is still in Ray's core."""
        internal = f"the error text {_internals.OWNER_UNKNOWN_TEXT!r}"
        core = Path(ray._raylet.__file__).read_bytes()
        assert _internals.OWNER_UNKNOWN_TEXT.encode() in core, _changed(
            internal, "ray._raylet no longer has it"
        )


class TestTestSuiteInternals:
    def test_core_worker_reference_counts(self, ray_address: str) -> None:
        """
        `ray._private.worker.global_worker.core_worker.get_all_reference_counts()`, which the
        soak test (tests/ray/test_staying_power.py) counts, still returns a dict.
        """
        internal = "ray._private.worker.global_worker.core_worker.get_all_reference_counts"
        core = ray._private.worker.global_worker.core_worker
        counts = getattr(core, "get_all_reference_counts", None)
        assert callable(counts), _changed(internal, "it is gone")
        assert isinstance(counts(), dict), _changed(internal, "it no longer returns a dict")


def test_no_other_module_touches_ray_internals() -> None:
    """No module of conveyor_ray but _internals names a private attribute of Ray."""
    found = []
    for path in sorted(Path(conveyor_ray.__file__).parent.glob("*.py")):
        if path.name == "_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("_private", "_on_completed"):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and ("ray._private" in text or text == "_node_ip_address"):
                found.append(f"{path.name}:{node.lineno} {text!r}")
    assert not found, f"Ray internals outside conveyor_ray/_internals.py: {found}"
