"""
The one sentence a script gets when it calls its flow at module level, without
``if __name__ == "__main__":``.

With the ``spawn`` and ``forkserver`` start methods every worker process imports the driver's
main script again (as ``__mp_main__``) before it runs anything. A script that calls its flow at
module level would start that flow again inside each worker, which multiprocessing answers
with a long traceback about its "bootstrapping phase" in every worker. Instead, the runner's
start in such a worker ends that worker at once with :data:`EXIT_UNGUARDED`, and the driver
raises :func:`unguarded_error`.
"""

from __future__ import annotations

import sys

from conveyor.exceptions import ConfigError

__all__ = ["EXIT_UNGUARDED", "WORKER_NAME", "importing_main", "main_script", "unguarded_error"]

#: The exit code of a worker that found itself importing an unguarded main script.
EXIT_UNGUARDED = 87

#: The prefix of the names of the runner's worker processes.
WORKER_NAME = "conveyor-processes-worker"


def importing_main() -> bool:
    """
    Whether this process is a multiprocessing child still importing its parent's main script:
    multiprocessing runs that script as ``__mp_main__`` and only makes it ``__main__`` once it
    was imported.
    """
    mp_main = sys.modules.get("__mp_main__")
    return mp_main is not None and sys.modules.get("__main__") is not mp_main


def main_script() -> str:
    """The driver's main script, for messages."""
    main = sys.modules.get("__main__")
    return str(getattr(main, "__file__", None) or "your main script")


def unguarded_error(script: str) -> ConfigError:
    """The error the driver raises when its workers found the script unguarded."""
    return ConfigError(
        f"{script} starts a flow when it is imported, and each worker process of the "
        "`processes` runner imports it again; call the flow under "
        '`if __name__ == "__main__":`.'
    )
