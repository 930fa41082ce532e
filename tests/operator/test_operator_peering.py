"""Two replicas with kopf peering against KMock: only the higher-priority one acts; the other takes over on exit."""

from __future__ import annotations

import logging

import httpx
import pytest
from operator_harness import Cluster, Operator, wait_for
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port


def pending(op: Operator) -> float | None:
    for family in text_string_to_metric_families(httpx.get(op.metrics_url).text):
        for sample in family.samples:
            if sample.name == "outrider_runs_pending" and sample.labels.get("target") == "repo-a":
                return sample.value
    return None


def admitted(cluster: Cluster, run: str) -> bool:
    job = cluster.job(run)
    return job is not None and job["spec"]["suspend"] is False


def test_only_the_active_peer_acts_and_the_standby_takes_over(cluster: Cluster, operator_env: dict[str, str],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf")
    cluster.create("/apis/kopf.dev/v1/clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "outrider"}})
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=1)
    low = Operator({**operator_env, "OUTRIDER_METRICS_PORT": str(free_port())}, peering="outrider", priority=10)
    high = Operator({**operator_env, "OUTRIDER_METRICS_PORT": str(free_port())}, peering="outrider", priority=20)
    low.start()
    try:
        cluster.run("r1", "repo-a")
        wait_for(lambda: admitted(cluster, "r1"), what="the only replica acts")
        wait_for(lambda: pending(low) == 0)
        high.start()
        try:
            wait_for(lambda: any("Pausing operations in favour of" in r.getMessage() for r in caplog.records),
                     what="the low-priority replica pauses")
            cluster.run("r2", "repo-a")
            wait_for(lambda: cluster.run_status("r2").get("reason") == "ConcurrencyLimit", what="r2 held")
            wait_for(lambda: pending(high) == 1, what="the high-priority replica reconciles")
            assert pending(low) is None, "a paused standby neither reconciles nor exports stale Target series"
            peers = cluster.get("/apis/kopf.dev/v1/clusterkopfpeerings/outrider")["status"]
            assert sorted(p["priority"] for p in peers.values() if p) == [10, 20]
        finally:
            high.stop()
        # The active replica left: the standby resumes and acts on what happens next.
        cluster.start_job("r1")
        cluster.finish_job("r1", ok=True)
        wait_for(lambda: admitted(cluster, "r2"), what="the former standby admits r2")
        wait_for(lambda: pending(low) == 0)
    finally:
        low.stop()
