"""
``conveyor cache list | clear | info``: what the result store holds, and removing it.

``list`` shows each entry's task, key, size, age and where it is; ``clear`` removes all of them,
those of one task (``--task``) or those older than ``--older-than`` seconds; ``info`` names the
store and its total size. ``--json`` prints one JSON document instead of text.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.caching.store import Entry, ResultStore

__all__ = ["add_cache_parser", "cache_command"]


def add_cache_parser(sub: Any) -> None:
    """Add ``conveyor cache`` and its three commands to the CLI's subparsers."""
    cache = sub.add_parser("cache", help="list, clear or describe the result store")
    actions = cache.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "list the cached results: task, key, size, age, where"),
        ("clear", "remove cached results: all, one task's, or older ones"),
        ("info", "show the store and its total size"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--json", action="store_true", help="print JSON instead of text")
        action.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        if name != "info":
            action.add_argument("--task", metavar="NAME", help="only the results of this task")
            action.add_argument(
                "--older-than", type=float, metavar="SECONDS", help="only results older than this"
            )


def _selected(store: ResultStore, args: argparse.Namespace) -> list[Entry]:
    now = time.time()
    return [
        e
        for e in store.entries()
        if (args.task is None or e.task == args.task)
        and (args.older_than is None or now - e.created > args.older_than)
    ]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop returns


def _as_dict(e: Entry, now: float) -> dict[str, Any]:
    return {
        "task": e.task,
        "key": e.key,
        "size": e.size,
        "age_seconds": round(now - e.created, 3),
        "expires": e.expires,
        "where": e.where,
    }


def cache_command(args: argparse.Namespace) -> int:
    """Do ``conveyor cache ACTION`` with the parsed ``args``; returns the exit code."""
    from conveyor.caching.settings import open_store, resolve_settings  # deferred: config files

    store = open_store(resolve_settings().store_spec)
    now = time.time()
    if args.cache_action == "info":
        entries = store.entries()
        total = sum(e.size for e in entries)
        info = {"store": store.location, "entries": len(entries), "total_size": total}
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print(f"store:   {info['store']}\nentries: {len(entries)}\nsize:    {_size(total)}")
        return 0
    entries = _selected(store, args)
    if args.cache_action == "clear":
        for e in entries:
            store.delete(e.key)
        if args.json:
            print(json.dumps({"removed": len(entries), "store": store.location}, indent=2))
        else:
            print(f"Removed {len(entries)} cached result(s) from {store.location}.")
        return 0
    if args.json:
        print(json.dumps([_as_dict(e, now) for e in entries], indent=2))
        return 0
    if not entries:
        print(f"No cached results in {store.location}.")
        return 0
    rows = [["task", "key", "size", "age", "where"]]
    rows += [
        [e.task, e.key[:12], _size(e.size), f"{now - e.created:.0f} s", e.where] for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 0
