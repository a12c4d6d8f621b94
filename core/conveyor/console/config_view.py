"""
``conveyor config [FILE.py:FLOW] [--runner NAME] [-o KEY=VALUE]... [--json]``: which runner a
flow run would use here, where that choice came from, and each of the runner's options with its
value and where it came from (the decorator, an environment variable, the CLI, which file, or
the runner's default). Nothing is started.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs

from conveyor.config import cli_overrides, explain_runner, resolve_runner
from conveyor.console import logs
from conveyor.console.run_command import EXIT_OK, parse_pairs
from conveyor.console.targets import load_flow
from conveyor.exceptions import safe_str
from conveyor.plugins.manager import get_host
from conveyor.redact import redact_options

__all__ = ["config_command", "describe_config"]


def describe_config(args: argparse.Namespace) -> dict[str, Any]:
    """What ``conveyor config`` shows, as a JSON-ready dict."""
    flow = load_flow(args.target) if args.target else None
    host = get_host()
    options = parse_pairs(args.option, "Option")
    with cli_overrides(args.runner, options):
        call = flow.call_runner if flow is not None else None
        decorator = flow.runner if flow is not None else None
        found = explain_runner(call=call, decorator=decorator, host=host)
        runner = resolve_runner(call=call, decorator=decorator, host=host)
    rows = {}
    for field in attrs.fields(type(runner)):
        if not field.init:
            continue
        key = field.alias or field.name
        origin = found.sources.get(key)
        if origin is None:
            origin = "the runner object given in code" if found.runner_object else "default"
        value = redact_options({key: _plain(getattr(runner, field.name))})[key]
        rows[key] = {"value": value, "source": origin}
    entry = host.runner(runner.name)
    return {
        "flow": flow.name if flow is not None else None,
        "runner": runner.name,
        "runner_source": found.source,
        "distribution": entry.distribution if entry is not None else None,
        "config_file": str(found.config.path) if found.config.path else None,
        "options": rows,
    }


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return safe_str(value)
    return value


def config_command(args: argparse.Namespace) -> int:
    """Do ``conveyor config``; returns the exit code."""
    handler = logs.install("WARNING")
    try:
        shown = describe_config(args)
    finally:
        logs.uninstall(handler)
    if args.json:
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    flow = f" for flow {shown['flow']!r}" if shown["flow"] else ""
    print(f"runner{flow}: {shown['runner']} (from {shown['runner_source']})")
    print(f"config file: {shown['config_file'] or 'none found'}")
    rows = shown["options"]
    if not rows:
        print("options: none")
    width = max((len(k) for k in rows), default=0)
    for key, row in rows.items():
        print(f"  {key.ljust(width)} = {row['value']!r}  (from {row['source']})")
    return EXIT_OK
