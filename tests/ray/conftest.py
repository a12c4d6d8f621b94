"""
Fixtures of the Ray tests: one `ray start --head` cluster on 127.0.0.1 for the whole session,
and this process joined to it once through a RayRunner, so Ray starts as few times as possible.
"""

from __future__ import annotations

import os

# Before Ray is imported anywhere: loopback only, no auto-started clusters, no usage stats.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# The test clusters use their own token, never the user's ~/.ray/auth_token.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", __import__("secrets").token_hex(32))

from collections.abc import Iterator

import pytest

pytest.importorskip("conveyor_ray")

from conveyor_ray import RayRunner
from tests.ray._support import HeadNode

# The session cluster's custom resource, for the resource tests.
SPECIAL = 2.0


@pytest.fixture(scope="session")
def head() -> Iterator[HeadNode]:
    """The session's Ray cluster: 2 CPUs, a custom resource `special`, loopback only."""
    node = HeadNode(num_cpus=2, resources={"special": SPECIAL})
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def ray_address(head: HeadNode) -> Iterator[str]:
    """This process joined to the session cluster (by a RayRunner), for every in-process test."""
    keeper = RayRunner(address=head.address, connect_timeout=30).start()
    try:
        yield head.address
    finally:
        keeper.stop()


@pytest.fixture
def runner(ray_address: str) -> RayRunner:
    """An unstarted Ray runner on the session cluster."""
    return RayRunner(address=ray_address)
