"""
The ``conveyor`` command: ``conveyor runners`` and ``conveyor run``.

Errors in what the user gave (an unknown runner, a bad option, a malformed config file, a
target that does not exist) print one line to stderr and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor._version import __version__
from conveyor.exceptions import ConfigError, PluginError, Terminated
from conveyor.flows import Flow
from conveyor.plugins.hookspecs import hookimpl
from conveyor.plugins.manager import get_host
from conveyor.states import Cancelled, StateType

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conveyor.flow_run_info import FlowRunInfo

__all__ = ["main"]

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Run conveyor flows on any runner, chosen by name.",
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    runners = sub.add_parser("runners", help="list the installed runners and plugin problems")
    runners.add_argument("--json", action="store_true", help="print JSON instead of a table")

    run = sub.add_parser("run", help="run a flow: FILE.py:FLOW or module:FLOW")
    run.add_argument("target", help="FILE.py:FLOW or package.module:FLOW")
    run.add_argument("--runner", "-r", help="runner name (overrides CONVEYOR_RUNNER and @flow)")
    run.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="runner option; VALUE is JSON, or a plain string (repeatable)",
    )
    run.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="flow parameter; VALUE is JSON, or a plain string (repeatable)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _pairs(items: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            msg = (
                f"{what} {item!r} is not KEY=VALUE; write it like max_workers=4 or names='[\"a\"]'."
            )
            raise ConfigError(msg)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _load_flow(target: str) -> Flow[..., Any]:
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        msg = f"Target {target!r} is not FILE.py:FLOW or module:FLOW; name the flow after a colon."
        raise ConfigError(msg)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            msg = f"Target file {where} does not exist."
            raise ConfigError(msg)
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            msg = f"Module {where!r} of target {target!r} cannot be imported: {exc}."
            raise ConfigError(msg) from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Flow):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, Flow))
        msg = f"{where} has no flow named {attr!r}" + (
            f"; its flows are: {', '.join(found)}." if found else "; it defines no @flow."
        )
        raise ConfigError(msg)
    return obj


def _cmd_runners(args: argparse.Namespace) -> int:
    host = get_host()
    entries = [e.describe() for e in host.registry.entries()]
    problems = [p.describe() for p in host.problems()]
    conflicts = {
        name: [f"{e.distribution} {e.version} ({e.plugin})" for e in claims]
        for name, claims in host.registry.conflicts().items()
    }
    if args.json:
        print(
            json.dumps({"runners": entries, "problems": problems, "conflicts": conflicts}, indent=2)
        )
        return EXIT_OK
    rows = [("NAME", "DISTRIBUTION", "VERSION", "CONCURRENCY", "CAPABILITIES")]
    for e in entries:
        caps = e["capabilities"]
        assert isinstance(caps, dict)
        rows.append(
            (
                str(e["name"]),
                str(e["distribution"]),
                str(e["version"]),
                str(e["concurrency"]),
                ", ".join(k for k, v in caps.items() if v) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    for name, claims in conflicts.items():
        print(f"\nconflict: runner {name!r} is registered by {' and '.join(claims)}")
    for p in problems:
        print(
            f"\n{p['status']} plugin {p['plugin']!r} ({p['distribution']} {p['version']}): {p['error']}"
        )
    return EXIT_OK


class _SignalGuard:
    """A plugin that puts the CLI's signal handlers back once a flow run's runner started."""

    def __init__(self, reinstall: Callable[[], None]) -> None:
        self.reinstall = reinstall

    @hookimpl
    def conveyor_flow_run_started(self, flow_run: FlowRunInfo) -> None:
        self.reinstall()


def _cmd_run(args: argparse.Namespace) -> int:
    # Deferred: config-file reading and the signal handling (psutil) only `conveyor run` needs,
    # so that `conveyor runners` and `--help` stay light.
    from conveyor._signals import exit_code, interrupt_handling, kill_descendants
    from conveyor.config import cli_overrides

    options = _pairs(args.option, "Option")
    params = _pairs(args.param, "Parameter")
    flow = _load_flow(args.target)

    interrupted: BaseException | None = None
    host = get_host()
    with cli_overrides(args.runner, options), interrupt_handling() as reinstall:
        guard = _SignalGuard(reinstall)
        host.register(guard, name="conveyor-cli-signals")
        try:
            flow_run = flow.create_run()
            counts: Counter[str] = Counter()
            flow_run.add_summary(counts)
            try:
                state = flow_run.run((), params)
            except (KeyboardInterrupt, Terminated) as exc:
                # The flow run cancelled its runs and stopped its runner; make sure nothing it
                # started outlives us, then report.
                interrupted = exc
                kill_descendants()
                state = Cancelled(
                    f"Interrupted by {'SIGTERM' if isinstance(exc, Terminated) else 'SIGINT'}."
                )
        finally:
            host.unregister(guard)
    summary = {
        "flow_run": flow_run.name,
        "runner": flow_run.runner.name,
        "state": state.name,
        "message": state.message,
        "task_runs": dict(sorted(counts.items())),
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        runs = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no task runs"
        print(f"\nflow run {flow_run.name} on {flow_run.runner.name}: {state.name}")
        if state.message and not state.is_completed():
            print(f"  {state.message}")
        print(f"  task runs: {runs}")
    if interrupted is not None:
        return exit_code(signal.SIGTERM if isinstance(interrupted, Terminated) else signal.SIGINT)
    return EXIT_OK if state.type is StateType.COMPLETED else EXIT_FLOW_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "runners":
            return _cmd_runners(args)
        return _cmd_run(args)
    except (ConfigError, PluginError) as exc:
        print(f"conveyor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("conveyor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
