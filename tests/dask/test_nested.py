"""Nested flows on Dask: a flow called from a flow body shares the outer flow's started runner."""

from __future__ import annotations

import psutil
import pytest

pytest.importorskip("conveyor_dask")

from conveyor import flow


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@flow(runner="dask")
def _innermost() -> set[int]:
    return _descendants()


@flow(runner="dask")
def _middle() -> set[int]:
    return _innermost()


@flow(runner="dask")
def _outer() -> tuple[set[int], set[int]]:
    return _descendants(), _middle()


@pytest.mark.timeout(300)
def test_nested_flows_reuse_the_cluster() -> None:
    """Flows nested three deep on the default Dask runner start one cluster, not one per level."""
    outer, innermost = _outer()
    assert outer, "the outer flow started no cluster processes"
    assert innermost == outer, f"nested flows started more processes: {innermost - outer}"
