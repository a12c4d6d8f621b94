"""
Caching and resume: stable keys for task runs, result stores, and the settings that pick them.

:mod:`~conveyor.caching.keys` hashes a task's identity and a run's arguments;
:mod:`~conveyor.caching.store` keeps entries in a folder or an fsspec URL;
:mod:`~conveyor.caching.settings` picks the store and limits;
:mod:`~conveyor.caching.context` is a flow run's view of all three.
"""

from __future__ import annotations

from conveyor.caching.keys import Unhashable, argument_digest, function_digest, value_digest
from conveyor.caching.store import CorruptEntry, Entry, FsspecStore, LocalStore, ResultStore

__all__ = [
    "CorruptEntry",
    "Entry",
    "FsspecStore",
    "LocalStore",
    "ResultStore",
    "Unhashable",
    "argument_digest",
    "function_digest",
    "value_digest",
]
