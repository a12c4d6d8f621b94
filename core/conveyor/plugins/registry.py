"""
The runner registry that the host hands to each plugin's ``conveyor_register_runners`` hook.

The host gives each plugin a registry of its own, attributed to that plugin, and takes what the
plugin added into its main registry (:meth:`RunnerRegistry.include`) only once the hook
returned: a plugin whose hook raised keeps none of the runners it had added.
"""

from __future__ import annotations

import attrs

from conveyor.exceptions import PluginError
from conveyor.runners import Capabilities, ConcurrencyType, Runner

__all__ = ["RunnerEntry", "RunnerRegistry"]


def _declaration_problem(runner_class: type[Runner], name: str | None) -> str:
    """What is wrong with a runner class's declarations, or "" if nothing is."""
    declared: object = name if name is not None else runner_class.name
    if not isinstance(declared, str) or not declared.strip() or declared != declared.strip():
        return f"name {declared!r} is not a runner name (a non-empty string without spaces)"
    concurrency: object = runner_class.concurrency
    if not isinstance(concurrency, ConcurrencyType):
        return f"`concurrency = {concurrency!r}` is not a conveyor.ConcurrencyType member"
    capabilities: object = runner_class.capabilities
    if not isinstance(capabilities, Capabilities):
        return f"`capabilities = {capabilities!r}` is not a conveyor.Capabilities"
    return ""


@attrs.frozen
class RunnerEntry:
    """One registered runner: its name, class, and the plugin and distribution it came from."""

    name: str
    runner_class: type[Runner]
    plugin: str
    distribution: str
    version: str

    def describe(self) -> dict[str, object]:
        """A JSON-ready description, as ``conveyor runners --json`` prints it."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "plugin": self.plugin,
            "class": f"{self.runner_class.__module__}.{self.runner_class.__qualname__}",
            "concurrency": self.runner_class.concurrency.value,
            "capabilities": self.runner_class.capabilities.as_dict(),
        }


@attrs.define
class RunnerRegistry:
    """
    Runner classes by name. Plugins add to it; the host owns it.

    Two plugins adding one name is a conflict: the name stays unusable, with an error naming
    both distributions, and every other name still works.
    """

    _entries: dict[str, RunnerEntry] = attrs.Factory(dict)
    _conflicts: dict[str, list[RunnerEntry]] = attrs.Factory(dict)
    _plugin: str = "unknown"
    _distribution: str = "unknown"
    _version: str = "unknown"
    _added: list[RunnerEntry] = attrs.Factory(list)

    def add(self, runner_class: type[Runner], name: str | None = None) -> None:
        """
        Register ``runner_class`` under ``name`` (default: its ``name`` class variable).

        Raises :class:`TypeError` if it is not a :class:`~conveyor.runners.Runner` subclass.
        """
        given: object = runner_class
        if not (isinstance(given, type) and issubclass(given, Runner)):
            msg = (
                f"Plugin {self._plugin!r} registered {runner_class!r}, which is not a Runner "
                "subclass; register a class derived from conveyor.runners.Runner."
            )
            raise TypeError(msg)
        problem = _declaration_problem(runner_class, name)
        if problem:
            msg = (
                f"Plugin {self._plugin!r} registered {runner_class.__qualname__}, whose {problem}; "
                "fix the runner class."
            )
            raise TypeError(msg)
        name = name or runner_class.name
        entry = RunnerEntry(name, runner_class, self._plugin, self._distribution, self._version)
        self._added.append(entry)
        self._put(entry)

    def include(self, other: RunnerRegistry) -> None:
        """
        Add everything that was added to ``other``, in its order and with its attribution, as
        if it had been added here (a clash with a runner here becomes a conflict).
        """
        for entry in other._added:
            self._added.append(entry)
            self._put(entry)

    def _put(self, entry: RunnerEntry) -> None:
        name, runner_class = entry.name, entry.runner_class
        if name in self._conflicts:
            self._conflicts[name].append(entry)
            return
        existing = self._entries.get(name)
        if existing is None:
            self._entries[name] = entry
            return
        if existing.runner_class is runner_class:
            return
        del self._entries[name]
        self._conflicts[name] = [existing, entry]

    def get(self, name: str) -> RunnerEntry | None:
        """The entry for ``name``; raises :class:`PluginError` if two plugins claim it."""
        if name in self._conflicts:
            claims = " and ".join(
                f"{e.distribution} {e.version} (plugin {e.plugin!r})" for e in self._conflicts[name]
            )
            msg = (
                f"Runner name {name!r} is registered by {claims}; uninstall one of them, or "
                "block one with CONVEYOR_BLOCK_PLUGINS=<plugin>."
            )
            raise PluginError(msg)
        return self._entries.get(name)

    def names(self) -> list[str]:
        """The usable runner names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[RunnerEntry]:
        """The usable runners, sorted by name."""
        return [self._entries[n] for n in sorted(self._entries)]

    def conflicts(self) -> dict[str, list[RunnerEntry]]:
        """Names claimed by more than one plugin, with the claims."""
        return dict(self._conflicts)
