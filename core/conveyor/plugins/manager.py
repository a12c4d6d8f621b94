"""
The plugin host: loads plugins from entry points, one at a time, and is the only code that
calls their hooks.

Entry points come from :mod:`conveyor.plugins._metadata`, which reads the ``*.dist-info``
folders on ``sys.path`` itself (not through ``importlib.metadata``). Loading follows three
rules: a plugin that fails to import, fails validation (a misspelt ``conveyor_*`` hook, found
by pluggy's ``check_pending``) or raises in its ``conveyor_register_runners`` hook is reported
with its distribution, version and error, and skipped, keeping none of the runners it added; a
plugin named in ``CONVEYOR_BLOCK_PLUGINS`` (comma-separated entry-point or distribution names)
is not loaded; and nothing heavy is imported, because runners import their backends only when
they start.

Every hook is called through pluggy's hook callers, so pluggy's tracing and wrappers apply;
the registration hook through a caller restricted to the one plugin being loaded, so that its
failure is that plugin's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from conveyor._version import __version__
from conveyor.plugins import builtin, hookspecs
from conveyor.plugins._metadata import conveyor_entry_points
from conveyor.plugins.registry import RunnerEntry, RunnerRegistry

if TYPE_CHECKING:
    from conveyor.flow_run_info import FlowRunInfo
    from conveyor.futures import RunFuture
    from conveyor.states import State

__all__ = ["PluginHost", "PluginProblem", "get_host", "use_host"]

logger = logging.getLogger("conveyor.plugins")

BLOCK_ENV = "CONVEYOR_BLOCK_PLUGINS"


@attrs.frozen
class PluginProblem:
    """A plugin that was not loaded: ``status`` is ``"broken"`` or ``"blocked"``."""

    plugin: str
    distribution: str
    version: str
    status: str
    error: str

    def describe(self) -> dict[str, str]:
        """A JSON-ready description."""
        return attrs.asdict(self)


class PluginHost:
    """
    Owns a pluggy manager, the runner registry, and the list of plugins that did not load.

    Build one per process (:func:`get_host`) or per test. Plugins load on first use.
    ``extra_plugins`` are registered like entry-point plugins, for tests and embedding.
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        extra_plugins: list[tuple[str, object]] | None = None,
        blocked: set[str] | None = None,
    ) -> None:
        self._use_entry_points = entry_points
        self._extra = list(extra_plugins or [])
        if blocked is None:
            raw = os.environ.get(BLOCK_ENV, "")
            blocked = {b.strip() for b in raw.split(",") if b.strip()}
        self._blocked = blocked
        self._pm = pluggy.PluginManager("conveyor")
        self._pm.add_hookspecs(hookspecs)
        self._registry = RunnerRegistry()
        self._problems: list[PluginProblem] = []
        self._loaded = False
        self._lock = threading.RLock()
        self._observers: bool | None = None

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"<PluginHost {state}, runners={self._registry.names() if self._loaded else '?'}>"

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> PluginHost:
        """Load every plugin once; later calls do nothing. Returns the host."""
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            self._add("conveyor", builtin, "conveyor", __version__)
            if self._use_entry_points:
                for ep in conveyor_entry_points():
                    if ep.name in self._blocked or ep.distribution in self._blocked:
                        self._problems.append(
                            PluginProblem(
                                ep.name,
                                ep.distribution,
                                ep.version,
                                "blocked",
                                f"blocked by {BLOCK_ENV}",
                            )
                        )
                        continue
                    try:
                        plugin = ep.load()
                    except Exception as exc:
                        self._broken(ep.name, ep.distribution, ep.version, "import", exc)
                        continue
                    self._add(ep.name, plugin, ep.distribution, ep.version)
            for name, plugin in self._extra:
                if name in self._blocked:
                    self._problems.append(
                        PluginProblem(
                            name, "unknown", "unknown", "blocked", f"blocked by {BLOCK_ENV}"
                        )
                    )
                    continue
                self._add(name, plugin, "unknown", "unknown")
            return self

    def _broken(self, name: str, dist: str, version: str, stage: str, exc: BaseException) -> None:
        error = f"{stage} failed: {type(exc).__name__}: {exc}"
        logger.warning("Skipping conveyor plugin %r from %s %s: %s", name, dist, version, error)
        self._problems.append(PluginProblem(name, dist, version, "broken", error))

    def _add(self, name: str, plugin: object, dist: str, version: str) -> None:
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:  # pluggy's validation of hookimpl signatures, duplicates
            self._broken(name, dist, version, "registration", exc)
            return
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._pm.unregister(plugin)
            self._broken(name, dist, version, "validation", exc)
            return
        # Its own registry, merged into the host's only if the hook returns.
        added = RunnerRegistry(plugin=name, distribution=dist, version=version)
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        register = self._pm.subset_hook_caller("conveyor_register_runners", remove_plugins=others)
        try:
            register(registry=added)
        except Exception as exc:
            self._pm.unregister(plugin)
            self._broken(name, dist, version, "conveyor_register_runners", exc)
        else:
            self._registry.include(added)
        self._observers = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def registry(self) -> RunnerRegistry:
        """The runner registry, after loading plugins."""
        self.load()
        return self._registry

    def runner(self, name: str) -> RunnerEntry | None:
        """The registered runner called ``name``, or None."""
        return self.registry.get(name)

    def problems(self) -> list[PluginProblem]:
        """Plugins that were blocked or broken, in load order."""
        self.load()
        return list(self._problems)

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins (the built-in one is ``conveyor``)."""
        self.load()
        return sorted(n for n, _ in self._pm.list_name_plugin())

    # -- observer hooks ---------------------------------------------------------------------

    def observes_task_runs(self) -> bool:
        """Whether any plugin implements ``conveyor_task_run_state_changed``."""
        if self._observers is None:
            self.load()
            self._observers = bool(self._pm.hook.conveyor_task_run_state_changed.get_hookimpls())
        return self._observers

    def task_run_state_changed(
        self, future: RunFuture[Any], old: State[Any], new: State[Any]
    ) -> None:
        """Fire ``conveyor_task_run_state_changed``; an observer's exception is logged."""
        self._fire(self._pm.hook.conveyor_task_run_state_changed, future=future, old=old, new=new)

    def flow_run_started(self, flow_run: FlowRunInfo) -> None:
        """Fire ``conveyor_flow_run_started`` with the run's frozen record; errors are logged."""
        self._fire(self._pm.hook.conveyor_flow_run_started, flow_run=flow_run)

    def flow_run_finished(self, flow_run: FlowRunInfo, state: State[Any]) -> None:
        """Fire ``conveyor_flow_run_finished`` with the run's frozen record; errors are logged."""
        self._fire(self._pm.hook.conveyor_flow_run_finished, flow_run=flow_run, state=state)

    @staticmethod
    def _fire(caller: pluggy.HookCaller, **kwargs: Any) -> None:
        try:
            caller(**kwargs)
        except Exception:
            logger.exception("A conveyor plugin's %s hook raised; ignoring it.", caller.name)

    # -- test support -----------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin object now (tests, embedding)."""
        self.load()
        label = name or str(getattr(plugin, "__name__", repr(plugin)))
        self._add(label, plugin, "unknown", "unknown")

    def unregister(self, plugin: object) -> None:
        """
        Unregister a plugin object's observer hooks (its runners stay registered); a plugin
        that is not registered (it was refused as broken, say) is left alone.
        """
        if self._pm.is_registered(plugin):
            self._pm.unregister(plugin)
        self._observers = None


_default: PluginHost | None = None
_default_lock = threading.Lock()


def get_host() -> PluginHost:
    """The process's plugin host, built on first use."""
    global _default
    host = _default
    if host is None:
        with _default_lock:
            if _default is None:
                _default = PluginHost()
            host = _default
    return host


@contextmanager
def use_host(host: PluginHost) -> Iterator[PluginHost]:
    """Make ``host`` the process's plugin host inside the ``with`` block (for tests)."""
    global _default
    with _default_lock:
        previous, _default = _default, host
    try:
        yield host
    finally:
        with _default_lock:
            _default = previous
