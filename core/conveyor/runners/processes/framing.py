"""
The messages between the driver and a worker process, on the worker's own pipe.

- driver to worker: a call packed by the envelope (``pack_or_crash``), or ``b""`` to stop;
- worker to driver, once: its hello, :data:`READY` or a start-up problem (the initializer
  raised, the memory limit is too low);
- worker to driver, once per call: the outcome and the value's type name in a header, then the
  value, so that a value the driver cannot unpickle is still reported with its type.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

from conveyor.runners.remote import Outcome, describe_type, dumps
from conveyor.states import CrashReason

__all__ = [
    "READY",
    "STOP",
    "Hello",
    "Result",
    "load_value",
    "pack_hello",
    "pack_result",
    "unpack_hello",
    "unpack_result",
]

STOP = b""
READY = "ready"
_HEADER = 4  # bytes of the header's length


class Hello(NamedTuple):
    """A worker's first message: READY, or the problem that keeps it from running tasks."""

    status: str
    problem: str = ""
    error: bytes | None = None
    traceback: str | None = None


class Result(NamedTuple):
    """A worker's report of one call: the outcome, the value's type and the pickled value."""

    outcome: Outcome
    type_name: str
    value: memoryview


def pack_hello(hello: Hello) -> bytes:
    """A hello as bytes."""
    return pickle.dumps(hello, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_hello(data: bytes) -> Hello:
    """The hello :func:`pack_hello` made."""
    hello: Hello = pickle.loads(data)
    return hello


def _plain(records: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """Log records whose attributes that do not pickle are replaced by their repr."""
    plain = []
    for data in records:
        clean = {}
        for key, value in data.items():
            try:
                pickle.dumps(value)
            except Exception:
                value = repr(value)
            clean[key] = value
        plain.append(clean)
    return tuple(plain)


def pack_result(outcome: Outcome, value: Any) -> bytes:
    """
    One call's report as bytes. Never raises: a value that does not pickle after all becomes
    a ``result-serialization`` crash, log records that do not pickle are sent as text.
    """
    type_name = "" if value is None else describe_type(value)
    try:
        body = b"" if value is None else dumps(value)
    except Exception as exc:  # run_packed checked that it pickles: a safety net
        outcome = Outcome(
            "crash",
            error_type=type(exc).__name__,
            error_message=f"The task returned a value of type {type_name} that cannot be "
            f"pickled: {type(exc).__name__}: {exc}",
            reason=CrashReason.RESULT_SERIALIZATION,
            records=outcome.records,
        )
        body = b""
    try:
        header = pickle.dumps((outcome, type_name), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        outcome = outcome._replace(records=_plain(outcome.records))
        header = pickle.dumps((outcome, type_name), protocol=pickle.HIGHEST_PROTOCOL)
    return len(header).to_bytes(_HEADER, "little") + header + body


def unpack_result(data: bytes) -> Result:
    """The header of a report :func:`pack_result` made, and its value still pickled."""
    view = memoryview(data)
    size = int.from_bytes(view[:_HEADER], "little")
    outcome, type_name = pickle.loads(view[_HEADER : _HEADER + size])
    return Result(outcome, type_name, view[_HEADER + size :])


def load_value(result: Result) -> Any:
    """The value of a report; raises what unpickling it raises."""
    # pickle.loads, as the envelope's loads, but reading the message's buffer without a copy.
    return pickle.loads(result.value) if result.value else None
