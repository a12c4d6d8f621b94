"""Cache keys: stable across processes, sensitive to what matters, and honest about what is not hashable."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading

import attrs
import numpy as np
import pytest

from conveyor.caching.keys import Unhashable, argument_digest, function_digest, value_digest


@dataclasses.dataclass
class Point:
    x: int
    y: float


@attrs.define
class Box:
    items: list[int]


VALUES = [
    None,
    True,
    1,
    1.5,
    2j,
    "text",
    b"bytes",
    [1, 2],
    (1, 2),
    {"b": 1, "a": [2]},
    {3, 1, 2},
    frozenset({"x"}),
    Point(1, 2.0),
    Box([1, 2]),
]


def test_digests_are_the_same_in_another_process() -> None:
    """A key computed in a fresh interpreter (another hash seed) equals this one's."""
    script = (
        "import numpy as np;"
        "from conveyor.caching.keys import value_digest;"
        "print(value_digest([{'b': 1, 'a': [2]}, {3, 1, 2}, 'text', np.arange(4)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONHASHSEED": "12345", **__import__("os").environ},
    )
    here = value_digest([{"b": 1, "a": [2]}, {3, 1, 2}, "text", np.arange(4)])
    assert out.stdout.strip() == here


def test_each_kind_of_value_is_distinct() -> None:
    """No two of a set of different values (1, True, 1.5, (1, 2), [1, 2], ...) share a digest."""
    digests = [value_digest(v) for v in VALUES]
    assert len(set(digests)) == len(VALUES)


def test_dicts_and_sets_ignore_order_and_lists_do_not() -> None:
    """A dict or set hashes the same in any insertion order; a list in another order does not."""
    assert value_digest({"a": 1, "b": 2}) == value_digest({"b": 2, "a": 1})
    assert value_digest({1, 2, 3}) == value_digest({3, 2, 1})
    assert value_digest([1, 2]) != value_digest([2, 1])


def test_numpy_arrays_hash_dtype_shape_and_bytes() -> None:
    """Arrays with the same bytes but another dtype or shape get other digests."""
    a = np.arange(6, dtype=np.int64)
    assert value_digest(a) == value_digest(np.arange(6, dtype=np.int64))
    assert value_digest(a) != value_digest(a.reshape(2, 3))
    assert value_digest(a) != value_digest(a.view(np.float64))
    assert value_digest(a[::2]) == value_digest(np.array([0, 2, 4]))


def test_dataclasses_and_attrs_hash_by_fields() -> None:
    """Equal field values give equal digests; a changed field changes it."""
    assert value_digest(Point(1, 2.0)) == value_digest(Point(1, 2.0))
    assert value_digest(Point(1, 2.0)) != value_digest(Point(1, 3.0))
    assert value_digest(Box([1])) != value_digest(Box([2]))


def test_unpicklable_value_is_unhashable() -> None:
    """A lock falls through to pickling, which fails: Unhashable, naming the type."""
    with pytest.raises(Unhashable, match="lock"):
        argument_digest((threading.Lock(),), {})


def test_an_edited_function_gets_another_digest() -> None:
    """Two functions of the same name whose code differs (here, a constant) differ."""
    ns1: dict[str, object] = {}
    ns2: dict[str, object] = {}
    exec("def f(x):\n    return x + 1\n", ns1)
    exec("def f(x):\n    return x + 2\n", ns2)
    exec("def g(x):\n    return x + 1\n", ns2)
    same: dict[str, object] = {}
    exec("def f(x):\n    return x + 1\n", same)
    assert function_digest(ns1["f"]) != function_digest(ns2["f"])  # type: ignore[arg-type]
    assert function_digest(ns1["f"]) == function_digest(same["f"])  # type: ignore[arg-type]
