"""
The cost of TLS on the clusters the dask runner starts (``tls=True``, the default) against
plain TCP (``tls=False``), side by side, interleaved on one machine:

- starting the cluster (2 workers) as the runner does;
- 1,000 no-op runs and a chain of 100 runs passing 10 MB arrays, through conveyor and through
  raw ``distributed`` on the same cluster, so the per-task budgets of ``bench_dask.py``
  (conveyor at most 1.25x raw) are checked on the TLS cluster too.

Run: ``python bench/bench_dask_tls.py [--repeat N]``. Prints the medians; exits 1 if conveyor
on the TLS cluster is over ``bench_dask.py``'s budgets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from bench_dask import conveyor_chain, conveyor_noop, raw_chain, raw_noop

KINDS = ("tls", "tcp")


def start(tls: bool) -> tuple[Any, float]:
    """A 2-worker cluster started as the runner starts its default one; and the seconds taken."""
    import dask

    from conveyor_dask._security import secure_kwargs
    from conveyor_dask.cluster import LocalProcessCluster
    from conveyor_dask.runner import OWNED_CLUSTER_CONFIG

    kwargs = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }
    t0 = time.perf_counter()
    kwargs = secure_kwargs(LocalProcessCluster, kwargs, tls=tls)
    with dask.config.set(OWNED_CLUSTER_CONFIG):
        cluster = LocalProcessCluster(**kwargs)
    return cluster, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from distributed import Client

    from conveyor_dask import DaskRunner

    starts: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(3):
        for kind in KINDS:
            cluster, took = start(kind == "tls")
            starts[kind].append(took)
            cluster.close()

    clusters = {kind: start(kind == "tls")[0] for kind in KINDS}
    results: dict[str, list[float]] = {}
    try:
        clients = {k: Client(c, set_as_default=False) for k, c in clusters.items()}
        runners = {
            k: DaskRunner(address=c.scheduler_address, client_kwargs={"security": c.security})
            for k, c in clusters.items()
        }
        for kind in KINDS:  # warm up
            raw_noop(clients[kind]), conveyor_noop(runners[kind])
            raw_chain(clients[kind]), conveyor_chain(runners[kind])
        for _ in range(args.repeat):  # interleaved, so load on the shared machine hits all
            for kind in KINDS:
                results.setdefault(f"{kind}_raw_noop", []).append(raw_noop(clients[kind]))
                results.setdefault(f"{kind}_cv_noop", []).append(conveyor_noop(runners[kind]))
                results.setdefault(f"{kind}_raw_chain", []).append(raw_chain(clients[kind])[0])
                results.setdefault(f"{kind}_cv_chain", []).append(conveyor_chain(runners[kind])[0])
        for client in clients.values():
            client.close()
    finally:
        for cluster in clusters.values():
            cluster.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    start_med = {k: statistics.median(v) for k, v in starts.items()}
    print(
        f"cluster start (2 workers)   tls {start_med['tls']:6.2f} s   tcp {start_med['tcp']:6.2f} s"
    )
    for what in ("noop", "chain"):
        label = "1,000 no-op runs " if what == "noop" else "chain of 100x10MB"
        for side in ("cv", "raw"):
            tls, tcp = med[f"tls_{side}_{what}"], med[f"tcp_{side}_{what}"]
            name = "conveyor" if side == "cv" else "raw     "
            print(
                f"{label} {name}  tls {tls * 1e3:8.1f} ms   tcp {tcp * 1e3:8.1f} ms   "
                f"tls/tcp {tls / tcp:.2f}x"
            )
    ratios = {w: med[f"tls_cv_{w}"] / med[f"tls_raw_{w}"] for w in ("noop", "chain")}
    print(
        f"on the TLS cluster, conveyor/raw: no-op {ratios['noop']:.2f}x, "
        f"chain {ratios['chain']:.2f}x (budget 1.25x)"
    )
    ok = all(r <= 1.25 for r in ratios.values())
    print("within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
