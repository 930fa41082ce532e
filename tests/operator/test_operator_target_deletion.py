"""Finalizers only where needed (issue 18): a Target carries none, so it can be deleted while no operator runs; its
daemon stops itself on the DELETED event, and a Target created again under the same name is reconciled afresh."""

from __future__ import annotations

import httpx
from operator_harness import Cluster, Operator, wait_for

from outrider.operator import handlers, kube

KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def finalizers(cluster: Cluster, name: str) -> list[str]:
    obj = cluster.get(kube.targets("default", name)) or {}
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def test_the_target_daemon_is_registered_without_a_finalizer() -> None:
    (daemon,) = [h for h in handlers.kopf.get_default_registry()._spawning.get_all_handlers()
                 if h.fn is handlers.target_daemon]
    assert daemon.requires_finalizer is False


def test_a_target_is_deleted_at_once_while_no_operator_runs(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    wait_for(lambda: cluster.target_status("repo-a").get("health") == "Idle", what="the Target reconciled")
    assert finalizers(cluster, "repo-a") == []
    operator.stop()
    cluster.delete(kube.targets("default", "repo-a"))
    assert cluster.get(kube.targets("default", "repo-a")) is None  # gone, not Terminating


def test_a_finalizer_left_by_an_older_operator_is_removed(cluster: Cluster, operator: Operator) -> None:
    """Targets of a version that let kopf put its finalizer on them lose it when this operator first sees them."""
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    cluster.patch(kube.targets("default", "repo-a"), {"metadata": {"finalizers": [KOPF_FINALIZER]}})
    operator.start()
    wait_for(lambda: finalizers(cluster, "repo-a") == [], what="the old finalizer removed")
    operator.stop()
    cluster.delete(kube.targets("default", "repo-a"))
    assert cluster.get(kube.targets("default", "repo-a")) is None


def test_a_deleted_targets_daemon_stops_and_one_created_again_is_reconciled(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=1)
    operator.start()
    wait_for(lambda: cluster.target_status("repo-a").get("health") == "Idle", what="the Target reconciled")
    series = 'outrider_target_health{health="Idle",namespace="default",target="repo-a"} 1.0'
    wait_for(lambda: series in httpx.get(operator.metrics_url).text, what="its series on /metrics")
    cluster.delete(kube.targets("default", "repo-a"))
    # Its daemon stopped: the operator no longer reports the Target.
    wait_for(lambda: 'target="repo-a"' not in httpx.get(operator.metrics_url).text, what="its series gone")
    cluster.run("r1", "repo-a")
    wait_for(lambda: cluster.run_status("r1").get("reason") == "TargetNotFound", what="held: no Target")

    cluster.target("repo-a", maxConcurrentRuns=1)  # the same name, a new object: a new daemon
    wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False, what="admitted again")
    wait_for(lambda: cluster.target_status("repo-a").get("activeRuns") == 1, what="the new Target's status")
    assert finalizers(cluster, "repo-a") == []


def test_a_target_deleted_while_no_operator_ran_leaves_the_control_plane_at_the_next_start(
        cluster: Cluster, operator_env: dict[str, str], control_plane: str) -> None:
    """Nobody saw its DELETED event, so at start the operator compares the control plane's Targets with the
    cluster's and posts target.deleted for the one that is gone; the other stays."""
    from tests.operator.conftest import CONTROL_PLANE_TOKEN

    operator_env.update(OUTRIDER_URL=control_plane, OUTRIDER_TOKEN=CONTROL_PLANE_TOKEN)
    client = httpx.Client(base_url=control_plane, headers={"Authorization": f"Bearer {CONTROL_PLANE_TOKEN}"}, timeout=30)

    def listed() -> set[str]:
        return {t["target"] for t in client.get("/v1/targets", headers={"Outrider-Min-Position": "0"}).json()}

    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    cluster.target("repo-b")
    first = Operator(operator_env).start()
    try:
        wait_for(lambda: listed() == {"repo-a", "repo-b"}, what="both Targets in the control plane")
    finally:
        first.stop()
    cluster.delete(kube.targets("default", "repo-b"))
    assert cluster.get(kube.targets("default", "repo-b")) is None
    assert listed() == {"repo-a", "repo-b"}  # nobody told it yet
    second = Operator(operator_env).start()
    try:
        wait_for(lambda: listed() == {"repo-a"}, what="the Target deleted while away left the control plane")
        deleted = client.get("/v1/events", params={"type": "target.deleted"}).json()["items"]
        assert [e["event"]["target"] for e in deleted] == ["repo-b"]
    finally:
        second.stop()
