"""
Ray addresses: where an address points, and the port probes that stand in for Ray's own
connect, which hangs (it logs and retries) when the address does not answer.
"""

from __future__ import annotations

import socket

from conveyor.exceptions import BackendUnavailable

__all__ = ["check_reachable", "gcs_alive", "host_port", "is_loopback"]


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
            f"The Ray cluster at `address={address!r}` is unreachable: "
            f"{type(exc).__name__}: {exc}. Start it (`ray start --head`) or fix `address`."
        )
        raise BackendUnavailable(msg) from exc


def gcs_alive(gcs_address: str, timeout: float = 1.0) -> bool:
    """Whether the GCS port still accepts connections (False if it refuses)."""
    target = host_port(gcs_address)
    if target is None:
        return True
    try:
        with socket.create_connection(target, timeout=timeout):
            return True
    except TimeoutError:
        return True  # slow is not gone
    except OSError:
        return False
