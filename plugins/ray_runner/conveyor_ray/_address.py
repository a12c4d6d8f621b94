"""
Ray addresses: where an address points, the port probes that stand in for Ray's own connect,
which hangs (it logs and retries) when the address does not answer, and the address of this
node's raylet.
"""

from __future__ import annotations

import socket
from typing import Any

from conveyor.exceptions import BackendUnavailable
from conveyor.redact import redact

__all__ = ["answers", "check_reachable", "host_port", "is_loopback", "local_raylet"]


def host_port(address: str) -> tuple[str, int] | None:
    """The (host, port) to check before joining, or None when it cannot be known here."""
    if address in ("auto", "local") or ("://" in address and not address.startswith("ray://")):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep:
        return (rest, 10001) if address.startswith("ray://") else None
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def check_reachable(address: str, timeout: float) -> None:
    """Raise BackendUnavailable if nothing accepts connections at ``address``."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=max(0.1, timeout)):
            pass
    except OSError as exc:
        msg = (
            f"The Ray cluster at `address={redact(address)!r}` is unreachable: "
            f"{type(exc).__name__}: {exc}. Start it (`ray start --head`) or fix `address`."
        )
        raise BackendUnavailable(msg) from exc


def answers(address: str, timeout: float = 1.0) -> bool:
    """Whether the port of a Ray process (a GCS, a raylet) still accepts connections."""
    target = host_port(address)
    if target is None:
        return True
    try:
        with socket.create_connection(target, timeout=timeout):
            return True
    except TimeoutError:
        return True  # slow is not gone
    except OSError:
        return False


def local_raylet(ray: Any) -> str | None:
    """
    ``host:port`` of the raylet this process is attached to (its node manager), from the
    cluster's node table; None if Ray cannot say (a Ray Client connection, say).
    """
    try:
        node_id = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node.get("NodeID") == node_id and node.get("NodeManagerPort"):
                return f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    except Exception:
        return None
    return None
