"""
A flow run's view of caching: its store (opened once, when first needed), which tasks are
cached, the resume namespace, and the warnings said once per task.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from conveyor.caching.keys import value_digest
from conveyor.caching.settings import CacheSettings, open_store, prune, resolve_settings
from conveyor.caching.store import ResultStore
from conveyor.exceptions import ConfigError

if TYPE_CHECKING:
    from conveyor._config_files import FileConfig

__all__ = ["RunCache"]

logger = logging.getLogger("conveyor")


class RunCache:
    """Caching for one flow run: built by the flow before it starts."""

    def __init__(
        self,
        settings: CacheSettings,
        flow_default: bool | None = None,
        resume: str | None = None,
        store: ResultStore | None = None,
    ) -> None:
        self.settings = settings
        #: The flow's ``cache=`` (None: the environment and config decide).
        self.flow_default = flow_default
        #: The resume namespace (flow name and parameters' digest), or None.
        self.resume = resume
        self._store = store
        self._store_error: str | None = None
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_flow(
        cls,
        flow_name: str,
        flow_default: bool | None,
        resume: tuple[Any, ...] | None = None,
        *,
        config: FileConfig | None = None,
    ) -> RunCache:
        """
        The caching of a new run of ``flow_name``; with ``resume`` (the run's parameters),
        every task run is journaled under the flow's name and parameters and reused from there.
        """
        namespace = None
        if resume is not None:
            namespace = f"resume:{flow_name}:{value_digest(resume)}"
        return cls(resolve_settings(config), flow_default, namespace)

    @property
    def on_by_default(self) -> bool:
        """Whether tasks that leave ``cache`` unset are cached."""
        if self.resume is not None:
            return True
        if self.flow_default is not None:
            return self.flow_default
        return bool(self.settings.default)

    def enabled_for(self, cache: bool | None) -> bool:
        """Whether a task with option ``cache`` is cached in this run."""
        return self.on_by_default if cache is None else cache

    def store(self) -> ResultStore | None:
        """The store, opened on first use; None (warned once) if it cannot be opened."""
        with self._lock:
            if self._store is None and self._store_error is None:
                try:
                    self._store = self._opened(open_store(self.settings.store_spec))
                except ConfigError as exc:
                    self._store_error = str(exc)
                    logger.warning("%s Task runs are not cached.", exc)
            return self._store

    def check(self) -> None:
        """
        Open the store and write a probe entry; raise :class:`~conveyor.ConfigError` if it is
        unusable (called before a flow whose tasks are cached by default starts).
        """
        store = open_store(self.settings.store_spec)
        try:
            store.check_writable()
        except OSError as exc:
            msg = (
                f"Result store {store.location!r} cannot be written ({exc.strerror or exc}); "
                "set `result_store` (or CONVEYOR_RESULT_STORE) to a folder or URL you can write."
            )
            raise ConfigError(msg) from exc
        with self._lock:
            self._store = self._opened(store)

    def _opened(self, store: ResultStore) -> ResultStore:
        """Prune ``store`` to the configured limits, once per flow run, when it is opened."""
        try:
            prune(store, self.settings.max_bytes, self.settings.max_age)
        except OSError as exc:
            logger.warning("Pruning result store %r failed: %s.", store.location, exc)
        return store

    def warn_once(self, task: str, topic: str, message: str) -> None:
        """Log ``message`` as a warning, once per task and topic."""
        with self._lock:
            if (task, topic) in self._warned:
                return
            self._warned.add((task, topic))
        logger.warning("%s", message)
