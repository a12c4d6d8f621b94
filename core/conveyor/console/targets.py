"""
Loading the flow that ``conveyor run`` and ``conveyor config`` name: ``FILE.py:FLOW`` or
``package.module:FLOW``. A file or module that does not import is one sentence naming the file,
the line and the error (a :class:`~conveyor.ConfigError`, exit code 2); ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from conveyor.exceptions import ConfigError, describe
from conveyor.flows import Flow

__all__ = ["load_flow"]


def _line_in(exc: BaseException, path: Path | None) -> str:
    """`` at line N`` of the innermost frame in ``path`` (or the innermost frame at all)."""
    frames = list(traceback.extract_tb(exc.__traceback__))
    if path is not None:
        mine = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
        frames = mine or frames
    return f" at line {frames[-1].lineno}" if frames else ""


def _import_error(what: str, exc: BaseException, path: Path | None) -> ConfigError:
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename or what}, line {exc.lineno}"
        return ConfigError(f"{where}: {exc.msg}; fix the syntax of that line.")
    fix = (
        "install it, or fix the import"
        if isinstance(exc, ImportError)
        else 'fix it, or move that code under `if __name__ == "__main__":`'
    )
    return ConfigError(f"{what} does not import: {describe(exc)}{_line_in(exc, path)}; {fix}.")


def _exec_file(path: Path) -> Any:
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        msg = f"Target file {path} cannot be loaded as Python; name a .py file."
        raise ConfigError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # whatever the user's module raises at import
        raise _import_error(f"Flow file {path}", exc, path) from exc
    return module


def load_flow(target: str) -> Flow[..., Any]:
    """The flow named by ``target``; raises :class:`~conveyor.ConfigError` saying what is wrong."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        msg = f"Target {target!r} is not FILE.py:FLOW or module:FLOW; name the flow after a colon."
        raise ConfigError(msg)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            msg = f"Target file {where} does not exist."
            raise ConfigError(msg)
        module = _exec_file(path)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name != where and not where.startswith(f"{exc.name}."):
                raise _import_error(f"Module {where!r}", exc, None) from exc
            msg = f"Module {where!r} of target {target!r} cannot be imported: {exc}."
            raise ConfigError(msg) from exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # whatever the user's module raises at import
            raise _import_error(f"Module {where!r}", exc, None) from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Flow):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, Flow))
        msg = f"{where} has no flow named {attr!r}" + (
            f"; its flows are: {', '.join(found)}." if found else "; it defines no @flow."
        )
        raise ConfigError(msg)
    return obj
