"""
Who may join a cluster the runner starts: TLS with a certificate made for that cluster only, and
the check that ``cluster_class`` names a Dask cluster class before anything of it is called.

A ``LocalCluster`` accepts any client that reaches its port, and on one machine every user
reaches loopback: another user's ``distributed.Client`` could run code as the driver's user.
With ``tls=True`` (the default) a ``LocalCluster`` the runner starts gets
``distributed.Security.temporary()``: a key and self-signed certificate made in this process's
memory, required of every scheduler, worker, nanny and client connection (mutual TLS). The
driver hands it to the scheduler and worker processes it starts over pipes, never on a command
line (``distributed`` writes it for a moment into a private temporary folder to load it);
nobody else has it, so nobody else's connection completes a handshake.

Importing this module does not import ``distributed``.
"""

from __future__ import annotations

from typing import Any

from conveyor import validators

__all__ = ["cluster_factory", "secure_kwargs"]

_CLUSTER_WHAT = "a Dask cluster class (a subclass of distributed.deploy.Cluster)"


def cluster_factory(spec: str | type | None) -> Any:
    """
    The cluster class ``spec`` names (the default ``LocalProcessCluster`` for None). Raises
    :class:`~conveyor.ConfigError` unless it is a subclass of ``distributed.deploy.Cluster``;
    only the named module is imported, and nothing in it is called.
    """
    from distributed.deploy.cluster import Cluster  # defers importing distributed until a start

    if spec is None:
        from conveyor_dask.cluster import LocalProcessCluster  # imports distributed

        return LocalProcessCluster

    def accept(obj: Any) -> bool:
        return isinstance(obj, type) and issubclass(obj, Cluster)

    if isinstance(spec, type):
        if not accept(spec):
            raise validators.invalid("DaskRunner", "cluster_class", spec, f"give {_CLUSTER_WHAT}")
        return spec
    return validators.resolve_name(
        spec, owner="DaskRunner", option="cluster_class", accept=accept, what=_CLUSTER_WHAT
    )


def secure_kwargs(factory: Any, kwargs: dict[str, Any], *, tls: bool) -> dict[str, Any]:
    """
    ``kwargs`` for starting ``factory``, with a temporary TLS certificate when ``tls`` and the
    cluster is a ``LocalCluster`` whose processes talk over the network. Left as given: other
    cluster classes (their security is their own), an explicit ``security`` or a non-TLS
    ``protocol`` in ``kwargs``, and an in-process (``inproc://``) ``LocalCluster``.
    """
    from distributed import LocalCluster, Security  # defers importing distributed

    from conveyor_dask.cluster import LocalProcessCluster  # imports distributed

    if not tls or not (isinstance(factory, type) and issubclass(factory, LocalCluster)):
        return kwargs
    if kwargs.get("security") is not None:
        return kwargs
    protocol = str(kwargs.get("protocol") or "")
    if protocol and not protocol.startswith("tls"):
        return kwargs
    in_process = kwargs.get("processes") is False and not issubclass(factory, LocalProcessCluster)
    if in_process and not protocol:
        return kwargs  # LocalCluster picks inproc://, which no other process can reach
    security = Security.temporary()  # type: ignore[no-untyped-call]
    return {**kwargs, "security": security, "protocol": "tls://"}
