"""Job → Run status, drain (emergency stop), adoption of a team's Jobs, and operator restarts, against KMock."""

from __future__ import annotations

import json

from operator_harness import Cluster, Operator, assert_stored_objects_fit_the_crds, now_text, wait_for

from outrider.operator import kube


def admitted(cluster: Cluster, run: str) -> bool:
    job = cluster.job(run)
    return job is not None and job["spec"]["suspend"] is False


def phase(cluster: Cluster, run: str) -> str | None:
    return cluster.run_status(run).get("phase")


def pod(cluster: Cluster, job: str, message: str) -> None:
    cluster.create("/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{job}-abcde", "namespace": "default", "labels": {"job-name": job}},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
        "status": {"containerStatuses": [{"name": "agent", "state": {"terminated": {"exitCode": 1, "message": message}}}]},
    })


def test_job_status_flows_into_run_status(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=2)
    operator.start()
    cluster.run("ok", "repo-a")
    cluster.run("bad", "repo-a")
    wait_for(lambda: admitted(cluster, "ok") and admitted(cluster, "bad"))
    cluster.job_status("ok", {"active": 1, "startTime": "2026-01-01T10:00:00Z"})
    wait_for(lambda: phase(cluster, "ok") == "Running", what="Running")
    status = cluster.run_status("ok")
    assert status["startTime"] == "2026-01-01T10:00:00Z"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Admitted": "True", "Running": "True", "Succeeded": "Unknown"}
    assert next(c for c in status["conditions"] if c["type"] == "Succeeded")["reason"] == "Running"
    cluster.job_status("ok", {"active": 0, "succeeded": 1, "completionTime": "2026-01-01T10:01:30Z", "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T10:01:30Z"}]})
    wait_for(lambda: phase(cluster, "ok") == "Succeeded", what="Succeeded")
    status = cluster.run_status("ok")
    assert (status["durationSeconds"], status["reason"], status["completionTime"]) == (90, "Completed", "2026-01-01T10:01:30Z")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Admitted": "True", "Running": "False", "Succeeded": "True"}

    pod(cluster, "bad", "ImportError: no module named agent\nTraceback ...")
    cluster.job_status("bad", {"active": 1, "startTime": "2026-01-01T10:00:00Z"})
    wait_for(lambda: phase(cluster, "bad") == "Running")
    cluster.job_status("bad", {"active": 0, "failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline",
         "lastTransitionTime": "2026-01-01T10:05:00Z"}]})
    wait_for(lambda: phase(cluster, "bad") == "Failed", what="Failed")
    status = cluster.run_status("bad")
    assert status["reason"] == "DeadlineExceeded" and status["durationSeconds"] == 300
    assert status["errorSummary"].startswith("ImportError: no module named agent")
    # Kubernetes Events are posted from a background queue (kube_events.py), after the status patch: wait for them.
    wanted = {"JobCreated", "Admitted", "Started", "DeadlineExceeded"}
    wait_for(lambda: wanted <= {e["reason"] for e in cluster.events_about("bad")}, what="the Run's Events")
    assert_stored_objects_fit_the_crds(cluster)


def test_usage_from_a_json_termination_message(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: admitted(cluster, "r1"))
    pod(cluster, "r1", json.dumps({"inputTokens": 1200, "outputTokens": 300, "costUSD": 0.042}))
    cluster.start_job("r1")
    cluster.finish_job("r1", ok=True)
    wait_for(lambda: phase(cluster, "r1") == "Succeeded")
    assert cluster.run_status("r1")["usage"] == {"inputTokens": 1200, "outputTokens": 300, "totalTokens": 1500, "costUSD": 0.042}


def test_drain_suspends_running_jobs_and_scheduler_cronjobs_and_resume_undoes_it(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=2)
    cron = {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "default", "labels": {"outrider.dev/scheduler": "true"}},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}
    cluster.create(kube.cronjobs("default"), cron)
    team_paused = {**cron, "metadata": {**cron["metadata"], "name": "paused-by-team"}, "spec": {**cron["spec"], "suspend": True}}
    cluster.create(kube.cronjobs("default"), team_paused)
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: admitted(cluster, "r1"))
    cluster.start_job("r1")
    wait_for(lambda: phase(cluster, "r1") == "Running")

    cluster.autonomy(enabled="false", mode="drain", reason="emergency")
    wait_for(lambda: cluster.job("r1")["spec"]["suspend"] is True, what="running Job suspended")
    wait_for(lambda: (cluster.get(kube.cronjobs("default", "nightly")) or {})["spec"].get("suspend") is True,
             what="CronJob suspended")
    status = wait_for(lambda: (s := cluster.run_status("r1")).get("reason") == "Drained" and s)
    assert status["phase"] == "Pending"
    cluster.run("r2", "repo-a")
    wait_for(lambda: cluster.run_status("r2").get("reason") == "AutonomyPaused")
    assert not admitted(cluster, "r2")

    cluster.autonomy(enabled="true", mode="hold")
    wait_for(lambda: (cluster.get(kube.cronjobs("default", "nightly")) or {})["spec"].get("suspend") is False,
             what="CronJob resumed")
    wait_for(lambda: admitted(cluster, "r1") and admitted(cluster, "r2"), what="both admitted again")
    assert cluster.get(kube.cronjobs("default", "paused-by-team"))["spec"]["suspend"] is True
    assert_stored_objects_fit_the_crds(cluster)


def test_hold_mode_lets_running_jobs_finish(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: admitted(cluster, "r1"))
    cluster.start_job("r1")
    cluster.autonomy(enabled="false", mode="hold")
    wait_for(lambda: cluster.target_status("repo-a").get("health") == "Paused")
    assert admitted(cluster, "r1")
    cluster.finish_job("r1", ok=True)
    wait_for(lambda: phase(cluster, "r1") == "Succeeded")


def external_job(name: str, *, suspend: bool) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "labels": {"outrider.dev/target": "repo-a"},
                         "annotations": {"outrider.dev/task-id": "T-9"}},
            "spec": {"suspend": suspend, "template": {"spec": {"restartPolicy": "Never", "containers": []}}}}


def test_an_external_suspended_job_is_adopted_and_gated(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="false")
    cluster.target("repo-a")
    operator.start()
    cluster.create(kube.jobs("default"), external_job("team-job", suspend=True))
    run = wait_for(lambda: cluster.get(kube.runs("default", "team-job")), what="mirror Run")
    assert run["spec"] == {"target": "repo-a", "jobName": "team-job", "task": {"id": "T-9"}}
    assert run["metadata"]["labels"]["outrider.dev/adopted"] == "true"
    wait_for(lambda: cluster.job("team-job")["metadata"]["labels"].get("outrider.dev/run") == "team-job")
    wait_for(lambda: cluster.run_status("team-job").get("reason") == "AutonomyPaused", what="gated")
    assert cluster.job("team-job")["spec"]["suspend"] is True
    cluster.autonomy(enabled="true")
    wait_for(lambda: admitted(cluster, "team-job"), what="admitted")
    cluster.start_job("team-job")
    cluster.finish_job("team-job", ok=True)
    wait_for(lambda: phase(cluster, "team-job") == "Succeeded")
    assert_stored_objects_fit_the_crds(cluster)


def test_an_external_running_job_is_mirrored_and_counted(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=1)
    operator.start()
    cluster.create(kube.jobs("default"), external_job("team-job", suspend=False))
    cluster.job_status("team-job", {"active": 1, "startTime": now_text()})
    wait_for(lambda: phase(cluster, "team-job") == "Running", what="mirrored as Running")
    cluster.run("mine", "repo-a")
    wait_for(lambda: cluster.run_status("mine").get("reason") == "ConcurrencyLimit", what="the external Job counts")
    cluster.finish_job("team-job", ok=False)
    wait_for(lambda: phase(cluster, "team-job") == "Failed")
    wait_for(lambda: admitted(cluster, "mine"))


def test_restart_keeps_breaker_state_and_does_not_over_admit(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=2, circuitBreaker={"failureThreshold": 1, "cooldownSeconds": 3600})
    cluster.target("repo-b", maxConcurrentRuns=2)
    operator.start()
    cluster.run("a1", "repo-a")
    wait_for(lambda: admitted(cluster, "a1"))
    cluster.start_job("a1")
    cluster.finish_job("a1", ok=False)
    wait_for(lambda: cluster.target_status("repo-a").get("breaker", {}).get("state") == "Open")
    wait_for(lambda: cluster.run_status("a1").get("breakerRecorded"))
    for name in ("b1", "b2"):
        cluster.run(name, "repo-b")
    wait_for(lambda: admitted(cluster, "b1") and admitted(cluster, "b2"))
    operator.stop()

    # While the operator is down: more Runs arrive, nothing finishes.
    cluster.run("a2", "repo-a")
    cluster.run("b3", "repo-b")
    operator.start()
    wait_for(lambda: cluster.run_status("b3").get("reason") == "ConcurrencyLimit", what="b3 held after restart")
    wait_for(lambda: cluster.run_status("a2").get("reason") == "CircuitOpen", what="a2 held by the kept breaker")
    b = cluster.target_status("repo-a")["breaker"]
    assert (b["state"], b["trips"], b["consecutiveFailures"]) == ("Open", 1, 1), "the failure was not counted twice"
    assert not admitted(cluster, "b3") and not admitted(cluster, "a2")
    cluster.start_job("b1")
    cluster.finish_job("b1", ok=True)
    wait_for(lambda: admitted(cluster, "b3"), what="b3 admitted when a slot frees")
    assert_stored_objects_fit_the_crds(cluster)


def test_deleting_a_job_cancels_its_run(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: admitted(cluster, "r1"))
    cluster.delete(kube.jobs("default", "r1"))
    wait_for(lambda: phase(cluster, "r1") == "Cancelled")
    assert cluster.run_status("r1")["reason"] == "JobDeleted"


def test_a_name_clash_with_someone_elses_job_fails_the_run_instead_of_hanging(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    cluster.create(kube.jobs("default"), {"apiVersion": "batch/v1", "kind": "Job",
                                          "metadata": {"name": "r1", "namespace": "default"}, "spec": {}})
    operator.start()
    cluster.run("r1", "repo-a")
    status = wait_for(lambda: (s := cluster.run_status("r1")).get("phase") == "Failed" and s)
    assert status["reason"] == "JobCreateFailed" and "already exists" in status["message"]
    assert "breakerRecorded" not in status  # a Run that never ran is not an agent failure
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")  # the condition says it too
    assert (succeeded["status"], succeeded["reason"]) == ("False", "JobCreateFailed")
    admitting = {c["type"]: c for c in cluster.target_status("repo-a")["conditions"]}["Admitting"]
    assert (admitting["status"], admitting["reason"]) == ("True", "CanAdmit")
