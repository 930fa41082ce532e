"""Admission against KMock: each hold reason, oldest first, autonomy off/on, and fail-closed ConfigMaps."""

from __future__ import annotations

import pytest
from operator_harness import Cluster, Operator, wait_for

from outrider.operator import kube


def held(cluster: Cluster, run: str, reason: str) -> bool:
    status = cluster.run_status(run)
    admitted = [c for c in status.get("conditions") or [] if c["type"] == "Admitted"]
    return (status.get("phase") == "Pending" and status.get("reason") == reason
            and bool(admitted) and admitted[0]["status"] == "False" and admitted[0]["reason"] == reason)


def suspended(cluster: Cluster, job: str) -> bool:
    obj = cluster.job(job)
    return obj is not None and obj["spec"].get("suspend") is True


def admitted(cluster: Cluster, run: str) -> bool:
    obj = cluster.job(run)
    return cluster.run_status(run).get("phase") == "Admitted" and obj is not None and obj["spec"]["suspend"] is False


def test_a_run_gets_a_suspended_job_owned_by_it_then_is_admitted(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    run = cluster.run("r1", "repo-a", task={"id": "T-1", "title": "t"})
    job = wait_for(lambda: cluster.job("r1"), what="the Job")
    assert job["metadata"]["labels"] == {"outrider.dev/run": "r1", "outrider.dev/target": "repo-a"}
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "Run" and owner["uid"] == run["metadata"]["uid"] and owner["controller"] is True
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"OUTRIDER_RUN_ID": "r1", "OUTRIDER_TARGET": "repo-a", "OUTRIDER_RUN_NAMESPACE": "default"}
    wait_for(lambda: admitted(cluster, "r1"), what="admission")
    status = cluster.run_status("r1")
    assert status["jobName"] == "r1" and status["admittedAt"] and status["probe"] is False
    target = wait_for(lambda: (s := cluster.target_status("repo-a")).get("activeRuns") == 1 and s, what="target status")
    assert target["health"] == "Healthy" and target["breaker"]["state"] == "Closed" and target["pendingRuns"] == 0


@pytest.mark.parametrize(
    ("configmap", "target", "reason"),
    [
        ({"enabled": "false", "reason": "maintenance"}, {}, "AutonomyPaused"),
        (None, {}, "ConfigMissing"),
        ({"enabled": "perhaps"}, {}, "ConfigInvalid"),
        ({"enabled": "true"}, None, "TargetNotFound"),
        ({"enabled": "true"}, {"paused": True}, "TargetPaused"),
        ({"enabled": "true"}, {"maxOpenPRs": 2, "annotations": {"outrider.dev/open-prs": "2"}}, "MaxOpenPRs"),
    ],
)
def test_each_hold_reason(cluster: Cluster, operator: Operator, configmap, target, reason) -> None:
    if configmap is not None:
        cluster.autonomy(**configmap)
    if target is not None:
        cluster.target("repo-a", **target)
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: held(cluster, "r1", reason), what=f"held with {reason}")
    assert suspended(cluster, "r1")
    if reason == "AutonomyPaused":
        assert cluster.run_status("r1")["message"] == "maintenance"
    if reason in ("ConfigMissing", "ConfigInvalid"):
        assert "default/outrider-autonomy" in cluster.run_status("r1")["message"]
    if target is not None:
        status = wait_for(lambda: (s := cluster.target_status("repo-a")).get("pendingRuns") == 1 and s)
        expected = {"AutonomyPaused": "Paused", "ConfigMissing": "Paused", "ConfigInvalid": "Paused",
                    "TargetPaused": "Paused", "MaxOpenPRs": "Blocked"}[reason]
        assert (status["health"], status["healthReason"]) == (expected, reason)
        # kopf posts Kubernetes Events from a background queue, after the status patch: wait for it.
        wait_for(lambda: any(e.get("reason") == reason for e in cluster.events_about("r1")), what=f"{reason} Event")


def test_circuit_open_holds(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    cluster.patch(kube.targets("default", "repo-a", "status"), {"status": {"breaker": {
        "state": "Open", "consecutiveFailures": 2, "trips": 1, "cooldownUntil": "2999-01-01T00:00:00Z"}}})
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: held(cluster, "r1", "CircuitOpen"), what="held CircuitOpen")
    status = cluster.target_status("repo-a")
    assert (status["health"], status["healthReason"], status["breaker"]["trips"]) == ("Blocked", "CircuitOpen", 1)


def test_concurrency_limit_admits_oldest_first(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="false")
    cluster.target("repo-a", maxConcurrentRuns=2)
    operator.start()
    for name in ("r1", "r2", "r3", "r4"):
        cluster.run(name, "repo-a")
        wait_for(lambda n=name: held(cluster, n, "AutonomyPaused"))
    cluster.autonomy(enabled="true")
    wait_for(lambda: admitted(cluster, "r1") and admitted(cluster, "r2"), what="two oldest admitted")
    wait_for(lambda: held(cluster, "r3", "ConcurrencyLimit") and held(cluster, "r4", "ConcurrencyLimit"))
    assert "2 of 2" in cluster.run_status("r3")["message"]
    cluster.start_job("r2")
    cluster.finish_job("r2", ok=True)
    wait_for(lambda: admitted(cluster, "r3"), what="r3 admitted after r2 finished")
    assert held(cluster, "r4", "ConcurrencyLimit")
    status = wait_for(lambda: (s := cluster.target_status("repo-a")).get("pendingRuns") == 1 and s)
    assert status["activeRuns"] == 2


def test_autonomy_off_holds_new_runs_and_on_admits_them_within_seconds(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=5)
    operator.start()
    cluster.autonomy(enabled="false", reason="incident 7")
    wait_for(lambda: (s := cluster.target_status("repo-a")).get("health") == "Paused" and s, what="target paused")
    cluster.run("r1", "repo-a")
    wait_for(lambda: held(cluster, "r1", "AutonomyPaused"))
    assert cluster.run_status("r1")["message"] == "incident 7"
    cluster.autonomy(enabled="true")
    wait_for(lambda: admitted(cluster, "r1"), timeout=5, what="admitted after resume")


def test_missing_configmap_fails_closed_until_it_appears(cluster: Cluster, operator: Operator) -> None:
    cluster.target("repo-a")
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: held(cluster, "r1", "ConfigMissing"))
    cluster.autonomy(enabled="true")
    wait_for(lambda: admitted(cluster, "r1"), what="admitted once the ConfigMap exists")


def test_invalid_configmap_fails_closed_until_fixed_and_deletion_pauses(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="yes please")
    cluster.target("repo-a", maxConcurrentRuns=3)
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: held(cluster, "r1", "ConfigInvalid"))
    assert "'enabled' is 'yes please'" in cluster.run_status("r1")["message"]
    cluster.autonomy(enabled="true")
    wait_for(lambda: admitted(cluster, "r1"))
    cluster.delete(kube.configmaps("default", "outrider-autonomy"))
    cluster.run("r2", "repo-a")
    wait_for(lambda: held(cluster, "r2", "ConfigMissing"), what="deleted ConfigMap pauses")


def test_a_target_created_later_admits_its_waiting_run(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    operator.start()
    cluster.run("r1", "repo-late")
    wait_for(lambda: held(cluster, "r1", "TargetNotFound"))
    cluster.target("repo-late")
    wait_for(lambda: admitted(cluster, "r1"))


def test_unpausing_a_target_admits(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", paused=True)
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: held(cluster, "r1", "TargetPaused"))
    cluster.patch(kube.targets("default", "repo-a"), {"spec": {"paused": False}})
    wait_for(lambda: admitted(cluster, "r1"))
