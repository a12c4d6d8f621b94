"""
More of the Dask runner on real clusters it starts itself: the memory limit, the dashboard link,
``adapt_kwargs``, ``cluster_class`` and nested async flows.

Every cluster here is a LocalCluster of worker processes on 127.0.0.1, at most 2 workers x 1
thread, started and closed by the runner of one flow.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import StateType, current_flow_run, flow
from conveyor.testing import wait_until
from conveyor_dask import DaskRunner
from tests.dask._support import (
    RecordingCluster,
    count_runs,
    hog,
    innocent,
    outer_async,
    outer_sync,
    where,
)

MEMORY_LIMIT = 300 << 20
#: The nanny's settings for the memory test, pinned so it does not depend on the user's
#: Dask config: the nanny terminates a worker whose RSS passes 95 % of its ``memory_limit``,
#: looking every 100 ms.
NANNY_MEMORY_CONFIG = {
    "distributed.worker.memory.terminate": 0.95,
    "distributed.worker.memory.monitor-interval": "100ms",
}


def _started_runner() -> DaskRunner:
    """The started runner of the flow run this is called in."""
    run = current_flow_run()
    assert run is not None, "not inside a flow run"
    runner = run.runner
    assert isinstance(runner, DaskRunner) and runner.started
    return runner


def _workers(runner: DaskRunner) -> dict[str, Any]:
    return dict(runner.client.scheduler_info(n_workers=-1)["workers"])


def _http_get(url: str) -> tuple[int, str]:
    """GET ``url`` directly (never through a proxy); the status and the body's start."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read(4096).decode("utf-8", "replace")


class TestMemoryLimit:
    def test_task_past_the_memory_limit_is_crashed_and_the_rest_complete(
        self, runs_dir: Path
    ) -> None:
        """A task allocating 1 GiB on 300 MiB workers is CRASHED within 15 s; the others complete, run once."""
        import dask

        folder = str(runs_dir)
        runner = DaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "memory_limit": "300MiB"}
        )

        @flow(runner=runner)
        def f() -> Any:
            client = _started_runner().client
            t0 = time.monotonic()
            bad = hog.submit(folder, 1024, 30)
            good = [innocent.submit(folder, f"ok{i}") for i in range(4)]
            state = bad.wait(15)
            elapsed = time.monotonic() - t0
            values = [g.result(timeout=60) for g in good]
            after = innocent.submit(folder, "after").result(timeout=60)
            # The nanny reports each memory kill to the scheduler as an event.
            events = wait_until(
                lambda: client.get_events("worker-restart-memory"),
                10,
                what="the nanny's worker-restart-memory event",
            )
            return state, elapsed, values, after, [msg for _, msg in events]

        with dask.config.set(NANNY_MEMORY_CONFIG):
            state, elapsed, values, after, events = f()

        assert state is not None, "the memory hog was not final within 15 s"
        assert state.type is StateType.CRASHED, state
        assert state.reason == "oom-killed", state
        assert "died" in state.message and "memory" in state.message, state.message
        assert elapsed < 15
        # The nanny killed the hog's own worker process, for its memory, not something else.
        hog_pids = {int(p.read_text()) for p in runs_dir.glob("hog.*")}
        killed = {e["pid"] for e in events}
        assert hog_pids & killed, (hog_pids, events)
        assert all(e["rss"] > 0.95 * MEMORY_LIMIT for e in events), events
        # The innocent runs completed, each body exactly once, never on the killed process.
        assert [name for name, _ in values] == [f"ok{i}" for i in range(4)]
        assert not {pid for _, pid in values} & killed
        for i in range(4):
            assert count_runs(runs_dir, f"ok{i}") == 1
        assert after[0] == "after" and count_runs(runs_dir, "after") == 1
        assert count_runs(runs_dir, "hog") >= 1


class TestDashboard:
    def test_default_cluster_logs_a_dashboard_link_that_serves(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The runner-owned LocalCluster logs http://127.0.0.1:<port>/status, served while it runs."""
        caplog.set_level(logging.INFO, logger="conveyor.dask")
        runner = DaskRunner(cluster_kwargs={"n_workers": 1})

        @flow(runner=runner)
        def f() -> Any:
            started = _started_runner()
            logged = [
                r.getMessage()
                for r in caplog.records
                if r.name == "conveyor.dask" and r.levelno == logging.INFO
            ]
            links = [
                m.group(0)
                for msg in logged
                for m in [re.search(r"http://127\.0\.0\.1:(\d+)/status", msg)]
                if m
            ]
            assert len(links) == 1, logged
            status, body = _http_get(links[0])
            return links[0], status, body, started.client.dashboard_link

        link, status, body, client_link = f()
        port = int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/status", link).group(1))
        assert 0 < port < 65536
        assert link == client_link
        assert status == 200 or 300 <= status < 400, status
        assert "dask" in body.lower(), body[:200]
        # The runner closed its cluster: nothing serves on that port any more.
        with pytest.raises(urllib.error.URLError):
            _http_get(link)


class TestAdapt:
    def test_adapt_kwargs_make_the_cluster_adaptive(self) -> None:
        """With adapt_kwargs and no initial workers, the cluster scales up to its maximum of 2 to run the work."""
        runner = DaskRunner(
            cluster_kwargs={"n_workers": 0, "threads_per_worker": 1},
            # A short target duration makes 4 queued runs ask for 4 workers: above the maximum.
            adapt_kwargs={
                "minimum": 0,
                "maximum": 2,
                "interval": "200ms",
                "target_duration": "50ms",
            },
        )

        @flow(runner=runner)
        def f() -> Any:
            started = _started_runner()
            cluster = started.cluster
            before = len(_workers(started))
            results = [x.result(timeout=60) for x in where.map(range(4))]
            after = len(_workers(started))
            adaptive = cluster._adaptive  # what cluster.adapt() made and returned
            bounds = (adaptive.minimum, adaptive.maximum)
            return before, results, after, bounds, [dict(rec) for _, rec in adaptive.log]

        before, results, after, bounds, log = f()
        assert before == 0, "the cluster did not start with 0 workers"
        assert [r[0] for r in results] == [0, 1, 4, 9]
        assert all(pid != os.getpid() for _, _, pid in results)
        assert 1 <= len({addr for _, addr, _ in results}) <= 2
        assert 1 <= after <= 2
        assert bounds == (0, 2)
        ups = [rec["n"] for rec in log if rec.get("status") == "up"]
        assert ups, f"the adaptive cluster never scaled up: {log}"
        assert max(ups) == 2, log  # asked for more, capped at the maximum


class TestClusterClass:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("distributed.LocalCluster", "LocalCluster"),
            ("tests.dask._support.RecordingCluster", "RecordingCluster"),
            (RecordingCluster, "RecordingCluster"),
        ],
        ids=["dotted-LocalCluster", "dotted-subclass", "class-object"],
    )
    def test_cluster_class_is_used_with_its_kwargs(self, spec: Any, expected: str) -> None:
        """cluster_class (a dotted name or a class) is the cluster started, with cluster_kwargs; the runner pickles."""
        runner = DaskRunner(
            cluster_class=spec,
            cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "resources": {"probe": 2}},
        )
        again = pickle.loads(pickle.dumps(runner))
        assert again == runner
        assert again.cluster_class == spec
        assert again.cluster_kwargs == runner.cluster_kwargs

        RecordingCluster.created.clear()

        @flow(runner=again)
        def f() -> Any:
            started = _started_runner()
            workers = _workers(started)
            value = where.with_options(resources={"probe": 2}).submit(3).result(timeout=60)
            return started.cluster, started.owns_cluster, workers, value

        try:
            cluster, owned, workers, value = f()
            created = list(RecordingCluster.created)
        finally:
            RecordingCluster.created.clear()

        assert type(cluster).__name__ == expected
        assert type(cluster).__module__ == (
            "tests.dask._support" if expected == "RecordingCluster" else "distributed.deploy.local"
        )
        assert owned
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")  # tls=True by default
        assert [w["resources"] for w in workers.values()] == [{"probe": 2}]
        assert value[0] == 9
        if expected == "RecordingCluster":
            assert len(created) == 1 and created[0][0] is cluster
            kwargs = created[0][1]
            assert kwargs["n_workers"] == 1 and kwargs["resources"] == {"probe": 2}
            assert kwargs["host"] == "127.0.0.1"  # the LocalCluster defaults apply to subclasses
        else:
            assert created == []
        assert cluster.status.name == "closed", "the runner did not close the cluster it started"


class TestNestedAsync:
    @pytest.mark.parametrize("outer", [outer_async, outer_sync], ids=["async-task", "sync-task"])
    def test_nested_async_flow_reuses_the_worker_client(self, outer: Any) -> None:
        """An async flow nested in Dask tasks (3 on 2x1 threads) runs async tasks and reuses the workers' client."""
        runner = DaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})

        @flow(runner=runner)
        def f() -> Any:
            started = _started_runner()
            address = started.cluster.scheduler_address
            before = _workers(started)
            pids = started.client.run(os.getpid)
            results = [x.result(timeout=120) for x in outer.map([1, 10, 100])]
            return address, set(before), pids, results, set(_workers(started))

        address, before, pids, results, after = f()
        assert after == before, "workers were added or lost"
        worker_pids = set(pids.values())
        for x, (values, inner_pids, facts) in zip([1, 10, 100], results, strict=True):
            assert values == [3 * x, 3 * (x + 1)]
            assert set(inner_pids) <= worker_pids, "the nested runs did not run on the workers"
            assert facts["runner"] == "DaskRunner"
            assert facts["no_cluster"] and not facts["owns_cluster"], facts
            assert facts["scheduler"] == facts["worker_scheduler"] == address, facts
            assert facts["is_worker_client"], facts
            assert facts["worker"] in before and facts["pid"] == pids[facts["worker"]]
            assert facts["children"] == [], "the nested flow started processes on the worker"
