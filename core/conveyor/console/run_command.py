"""
``conveyor run``: load the flow, bind its parameters, run it with live progress and the CLI's
log handler, then print the report (or the JSON document) and say how it ended in the exit code.

Exit codes: 0 the flow completed; 1 it did not; 2 a usage or configuration error (the target,
its parameters, the runner's name or options, a config file, a plugin); 3 the runner could not
start or stop (an unreachable backend); 130 and 143 for SIGINT and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.console import logs
from conveyor.console.output import own_stdout
from conveyor.console.params import bind_params, describe_parameters, signature_text
from conveyor.console.report import render_report, summary
from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    RunnerFailed,
    Terminated,
    describe,
)
from conveyor.flows import PROGRESS_ENV, progress_wanted
from conveyor.plugins.hookspecs import hookimpl
from conveyor.plugins.manager import get_host
from conveyor.report import interrupted_by
from conveyor.states import Cancelled, State, StateType

if TYPE_CHECKING:
    from conveyor.flow_run import FlowRun
    from conveyor.flow_run_info import FlowRunInfo
    from conveyor.flows import Flow

__all__ = [
    "EXIT_BACKEND",
    "EXIT_FLOW_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "flow_help",
    "parse_pairs",
    "run_command",
]

EXIT_OK = 0
EXIT_FLOW_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3


class _CliPlugin:
    """Puts the CLI's signal handlers back once a runner started, and prints its dashboard."""

    def __init__(self, reinstall: Callable[[], None]) -> None:
        self.reinstall = reinstall
        self.shown: set[str] = set()

    @hookimpl
    def conveyor_flow_run_started(self, flow_run: FlowRunInfo) -> None:
        self.reinstall()
        try:
            url = flow_run.runner.dashboard_url()
        except Exception:  # a runner's dashboard is a courtesy: never an error
            url = None
        if url and url not in self.shown:
            self.shown.add(url)
            print(f"conveyor: {flow_run.runner_name} dashboard: {url}", file=sys.stderr, flush=True)


def parse_pairs(items: list[str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict; a VALUE is JSON if it parses, else the text."""
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


def flow_help(flow: Flow[..., Any], target: str) -> str:
    """What ``conveyor run FILE:FLOW --help`` prints: the flow's parameters."""
    rows = describe_parameters(flow.name, flow.fn)
    lines = [
        f"usage: conveyor run {target} [-p NAME=VALUE]...",
        "",
        signature_text(flow.name, flow.fn),
    ]
    doc = (flow.fn.__doc__ or "").strip()
    if doc:
        lines += ["", doc.splitlines()[0]]
    lines += ["", "parameters:" if rows else "parameters: none"]
    width = max((len(n) for n, _, _ in rows), default=0)
    kinds = max((len(k) for _, k, _ in rows), default=0)
    lines += [f"  -p {n.ljust(width)}  {k.ljust(kinds)}  {d}" for n, k, d in rows]
    return "\n".join(lines)


def _progress(args: argparse.Namespace) -> bool:
    if args.no_progress:
        return False
    return progress_wanted(None) if os.environ.get(PROGRESS_ENV) else True


def _start_failure(flow_run: FlowRun, exc: Exception) -> Exception:
    """The error to report for a runner that raised ``exc`` while it started."""
    name = flow_run.runner.name
    if isinstance(exc, ConfigError | BackendUnavailable):
        return exc
    if isinstance(exc, TypeError | ValueError):
        err: Exception = ConfigError(f"Runner {name!r} rejected its options: {describe(exc)}.")
    else:
        err = RunnerFailed(f"Runner {name!r} could not start: {describe(exc)}.")
    err.__cause__ = exc
    return err


def _execute(
    flow_run: FlowRun, call: tuple[tuple[Any, ...], dict[str, Any]]
) -> tuple[State[Any], BaseException | None]:
    """Run the flow; return its state and what to report after it (a signal, a stop failure)."""
    from conveyor._signals import kill_descendants  # deferred: psutil, for `conveyor run` only

    try:
        return flow_run.run(*call), None
    except (KeyboardInterrupt, Terminated) as exc:
        # The flow run cancelled its runs and stopped its runner; make sure nothing it started
        # outlives us, then report.
        kill_descendants()
        sig = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        if flow_run.report is not None and flow_run.record.state is None:
            # Interrupted again while it stopped: the run never ended, so write its report now.
            flow_run.write_report(flow_run.report, interrupted=interrupted_by(exc))
        return Cancelled(f"Interrupted by {sig}."), exc
    except Exception as exc:
        if flow_run.record.started is None:
            failure = _start_failure(flow_run, exc)
            if failure is exc:
                raise
            raise failure from exc
        if flow_run.record.state is None:
            raise
        stop = RunnerFailed(f"Runner {flow_run.runner.name!r} failed to stop: {describe(exc)}.")
        stop.__cause__ = exc
        return flow_run.record.state, stop


def run_command(args: argparse.Namespace) -> int:
    """Do ``conveyor run`` with the parsed ``args``; returns the exit code."""
    from conveyor._signals import exit_code, interrupt_handling  # deferred: psutil
    from conveyor.config import cli_overrides  # deferred: config files, for `run` only
    from conveyor.console.targets import load_flow  # deferred: it imports the flow machinery

    with own_stdout(divert=args.json) as out:
        handler = logs.install(args.log_level)
        try:
            flow = load_flow(args.target)
            if args.help:
                print(flow_help(flow, args.target), file=out)
                return EXIT_OK
            call = bind_params(flow.name, flow.fn, args.param)
            options = parse_pairs(args.option, "Option")
            host = get_host()
            with cli_overrides(args.runner, options), interrupt_handling() as reinstall:
                plugin = _CliPlugin(reinstall)
                host.register(plugin, name="conveyor-cli")
                try:
                    resume = call if getattr(args, "resume", False) else None
                    flow_run = flow.create_run(
                        progress=_progress(args), report=args.report, resume=resume
                    )
                    flow_run.progress_transient = True
                    try:
                        state, after = _execute(flow_run, call)
                    finally:
                        flow_run.close_display()
                finally:
                    host.unregister(plugin)
        finally:
            logs.uninstall(handler)
        value = state.data if state.is_completed() else None
        if state.is_completed():
            try:
                value = state.result()
            except Exception as exc:  # a remote value that cannot be fetched
                value = f"<the result could not be fetched: {describe(exc)}>"
        # What the tasks printed, still in sys.stdout's buffer, comes out before the report
        # (a task may have closed sys.stdout: then there is nothing to flush).
        with contextlib.suppress(ValueError, OSError):
            sys.stdout.flush()
        if args.json:
            print(json.dumps(summary(flow_run.record, state, value), indent=2), file=out)
        else:
            print("\n" + render_report(flow_run.record, state, value), file=out)
        out.flush()
    if isinstance(after, Terminated | KeyboardInterrupt):
        return exit_code(signal.SIGTERM if isinstance(after, Terminated) else signal.SIGINT)
    if after is not None:
        raise after
    return EXIT_OK if state.type is StateType.COMPLETED else EXIT_FLOW_FAILED
