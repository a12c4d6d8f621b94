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
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from conveyor._interrupts import interrupts, is_real_interrupt
from conveyor._version import __version__
from conveyor.exceptions import describe
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
# A plugin still importing after this many seconds is named in a warning while it goes on.
SLOW_IMPORT_SECONDS = 2.0


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
            blocked = set(os.environ.get(BLOCK_ENV, "").split(","))
        self._blocked = {_normalize(b) for b in blocked if b.strip()}
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
                    if self._is_blocked(ep.name, ep.distribution, ep.value):
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
                        with _slow_warning(ep.name, ep.distribution):
                            plugin = ep.load()
                    except BaseException as exc:
                        _reraise_interrupt(exc)
                        self._broken(ep.name, ep.distribution, ep.version, "import", exc)
                        continue
                    self._add(ep.name, plugin, ep.distribution, ep.version)
            for name, plugin in self._extra:
                if self._is_blocked(name):
                    self._problems.append(
                        PluginProblem(
                            name, "unknown", "unknown", "blocked", f"blocked by {BLOCK_ENV}"
                        )
                    )
                    continue
                self._add(name, plugin, "unknown", "unknown")
            return self

    def _is_blocked(self, *names: str) -> bool:
        """Whether a plugin is blocked by its entry-point name, distribution or module."""
        for name in names:
            module = name.split(":")[0].split(".")[0]
            if _normalize(name) in self._blocked or _normalize(module) in self._blocked:
                return True
        return False

    def _broken(self, name: str, dist: str, version: str, stage: str, exc: BaseException) -> None:
        error = f"{stage} failed: {describe(exc)}"
        logger.warning("Skipping conveyor plugin %r from %s %s: %s", name, dist, version, error)
        self._problems.append(PluginProblem(name, dist, version, "broken", error))

    def _add(self, name: str, plugin: object, dist: str, version: str) -> None:
        try:
            self._pm.register(plugin, name=name)
        except (
            BaseException
        ) as exc:  # pluggy's validation of hookimpls, duplicates, a hostile object
            _reraise_interrupt(exc)
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
        except BaseException as exc:  # whatever the hook raises, even SystemExit
            _reraise_interrupt(exc)
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
        before = interrupts()
        try:
            caller(**kwargs)
        except BaseException as exc:  # an observer never takes a run down, whatever it raises
            if is_real_interrupt(exc, before):
                raise
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


def _normalize(name: str) -> str:
    """A plugin, distribution or module name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _reraise_interrupt(exc: BaseException) -> None:
    """Let a Ctrl-C during plugin loading go on; anything else a plugin raises is its fault."""
    if isinstance(exc, KeyboardInterrupt):
        raise exc


@contextmanager
def _slow_warning(name: str, dist: str) -> Iterator[None]:
    """Warn, while it goes on, when importing a plugin takes longer than it should."""
    timer = threading.Timer(
        SLOW_IMPORT_SECONDS,
        logger.warning,
        (
            "Importing conveyor plugin %r from %s takes more than %s s; every conveyor command "
            "waits for it (block it with %s=%s).",
            name,
            dist,
            SLOW_IMPORT_SECONDS,
            BLOCK_ENV,
            name,
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
