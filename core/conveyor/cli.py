"""
The ``conveyor`` command: ``conveyor runners``, ``conveyor config`` and ``conveyor run``.

Errors that are not the flow's own print one sentence to stderr, never a traceback (``--debug``
shows it), and say what they are in the exit code: 2 for what the user gave (an unknown runner,
a bad option or parameter, a malformed config file, a target that does not import), 3 for a
runner that could not start or stop (see :mod:`conveyor.console.run_command`).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import TYPE_CHECKING

from conveyor._version import __version__
from conveyor.console.cache_command import add_cache_parser
from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    PluginError,
    RunnerFailed,
    describe,
)
from conveyor.plugins.manager import get_host
from conveyor.redact import redact

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_INTERRUPTED = 130


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Run conveyor flows on any runner, chosen by name.",
        epilog=(
            "exit codes: 0 completed, 1 the flow did not complete, 2 usage or configuration "
            "error, 3 the runner could not start or stop, 130/143 SIGINT/SIGTERM"
        ),
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    runners = sub.add_parser("runners", help="list the installed runners and plugin problems")
    runners.add_argument("--json", action="store_true", help="print JSON instead of a table")

    config = sub.add_parser(
        "config", help="show which runner a flow would use, its options, and where each came from"
    )
    config.add_argument("target", nargs="?", help="FILE.py:FLOW or module:FLOW (for its @flow)")
    _runner_arguments(config)
    config.add_argument("--json", action="store_true", help="print JSON instead of text")
    config.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    run = sub.add_parser(
        "run",
        help="run a flow: FILE.py:FLOW or module:FLOW",
        add_help=False,
        description="Run a flow. `conveyor run FILE.py:FLOW --help` lists its parameters.",
    )
    run.add_argument("target", nargs="?", help="FILE.py:FLOW or package.module:FLOW")
    run.add_argument(
        "-h", "--help", action="store_true", help="show this help, or the flow's parameters"
    )
    _runner_arguments(run)
    run.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="flow parameter, coerced to the flow's annotation (repeatable)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout (prints go to stderr)",
    )
    run.add_argument("--no-progress", action="store_true", help="show no live progress")
    run.add_argument(
        "--report", metavar="FILE.html", help="write the HTML run report there (see README)"
    )
    run.add_argument(
        "--log-level", default="INFO", metavar="LEVEL", help="DEBUG, INFO (default), WARNING, ERROR"
    )
    run.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    run.add_argument(
        "--resume",
        action="store_true",
        help="reuse the completed runs of the last --resume run with these parameters",
    )
    add_cache_parser(sub)
    return parser, run


def _runner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runner", "-r", help="runner name (overrides CONVEYOR_RUNNER and @flow)")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="runner option; VALUE is JSON, or a plain string (repeatable)",
    )


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


def _fail(exc: BaseException, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    hint = "" if debug else " (--debug shows the traceback)"
    message = redact(str(exc))  # passwords in addresses
    print(f"conveyor: error: {message}{hint if code == EXIT_BACKEND else ''}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser, run = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    try:
        if args.command == "runners":
            return _cmd_runners(args)
        # Deferred: what only `run` and `config` need (config files, psutil, the flow loader)
        # stays out of `conveyor runners` and `--help`.
        if args.command == "config":
            from conveyor.console.config_view import config_command  # deferred: see above

            return config_command(args)
        if args.command == "cache":
            from conveyor.console.cache_command import cache_command  # deferred: see above

            return cache_command(args)
        if args.target is None:
            if args.help:
                run.print_help()
                return EXIT_OK
            run.error("give the flow to run, FILE.py:FLOW or module:FLOW")
        from conveyor.console.run_command import run_command  # deferred: see above

        return run_command(args)
    except (ConfigError, PluginError) as exc:
        return _fail(exc, EXIT_USAGE, debug)
    except (BackendUnavailable, RunnerFailed) as exc:
        return _fail(exc, EXIT_BACKEND, debug)
    except KeyboardInterrupt:
        print("conveyor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # conveyor's own failure: one line, the traceback with --debug
        if debug:
            traceback.print_exception(exc)
        print(
            f"conveyor: internal error: {describe(exc)}; run again with --debug and report it.",
            file=sys.stderr,
        )
        return EXIT_FLOW_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
