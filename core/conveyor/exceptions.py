"""
The exceptions conveyor raises.

Every exception derives from :class:`ConveyorError`. Errors about configuration and bad input are
raised before any work starts; errors about runs are raised when a run's result is asked for.
"""

from __future__ import annotations

__all__ = [
    "MAX_MESSAGE",
    "BackendUnavailable",
    "CancelledRun",
    "ConfigError",
    "ConveyorError",
    "CrashedRun",
    "NoFlowRunError",
    "PluginError",
    "RunnerFailed",
    "RunnerNotStartedError",
    "Terminated",
    "TimedOutRun",
    "UnknownRunnerError",
    "UpstreamFailedError",
    "describe",
    "safe_str",
    "shorten",
]

# A state's message is for people: longer ones are cut, the rest is in the exception itself.
MAX_MESSAGE = 8_000


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder when its ``__str__`` raises (a hostile exception)."""
    try:
        return str(obj)
    except BaseException as exc:  # a __str__ may raise anything, even SystemExit
        return f"<{type(obj).__name__}.__str__ raised {type(exc).__name__}>"


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, cut to ``limit`` characters with a note of how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, safe against its ``__str__`` and cut to length."""
    return shorten(f"{type(exc).__name__}: {safe_str(exc)}")


class ConveyorError(Exception):
    """
    Base class of every error conveyor raises.
    """


class ConfigError(ConveyorError, ValueError):
    """
    A runner spec, an option, a decorator argument or a config file is invalid.

    Raised before any work starts; the message names the bad value and the fix.
    """


class UnknownRunnerError(ConfigError, LookupError):
    """
    A runner name that no installed plugin provides.
    """


class PluginError(ConveyorError):
    """
    A plugin could not be loaded, or two plugins claim the same runner name.
    """


class RunnerNotStartedError(ConveyorError, RuntimeError):
    """
    Work was submitted to a runner that is not started (or already stopped).
    """


class BackendUnavailable(ConveyorError, ConnectionError):
    """
    A runner could not start or reach its backend within its connect timeout.
    """


class RunnerFailed(ConveyorError):
    """
    A runner failed to start or to stop (``conveyor run`` exits 3 for it); the runner's own
    error is the ``__cause__``.
    """


class NoFlowRunError(ConveyorError, RuntimeError):
    """
    ``.submit()`` or ``.map()`` was called outside a flow run.
    """


class CrashedRun(ConveyorError):
    """
    A run ended CRASHED: the infrastructure failed, not the task's code.

    Raised by ``result()`` of a crashed run. ``reason`` is a short machine-readable tag such as
    ``worker-died``, ``result-serialization`` or ``backend-lost``.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class CancelledRun(ConveyorError):
    """
    A run ended CANCELLED; raised by ``result()`` of that run.
    """


class TimedOutRun(ConveyorError, TimeoutError):
    """
    A run exceeded its ``timeout_seconds``; raised by ``result()`` of that run.
    """


class UpstreamFailedError(ConveyorError):
    """
    A run was not started because a run it depends on did not complete.
    """


class Terminated(BaseException):
    """SIGTERM arrived; raised in the main thread like KeyboardInterrupt for SIGINT."""
