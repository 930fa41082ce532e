"""Unit tests of the Run ↔ Job mapping (pure): the Job built from a Run, and the Run status read from a Job."""

from __future__ import annotations

import json

from outrider.operator import jobs


def run(**spec):
    spec.setdefault("target", "repo-a")
    spec.setdefault("template", {"metadata": {"labels": {"team": "x"}, "annotations": {"a": "b"}}, "spec": {
        "backoffLimit": 1, "template": {"spec": {"containers": [
            {"name": "agent", "image": "agent:1", "env": [{"name": "OUTRIDER_TARGET", "value": "kept"}]}]}}}})
    return {"metadata": {"name": "r1", "namespace": "ns", "uid": "u-1"}, "spec": spec}


def job(status=None, suspend=False):
    return {"metadata": {"name": "r1", "namespace": "ns"}, "spec": {"suspend": suspend}, "status": status or {}}


def test_the_job_is_suspended_owned_labelled_and_given_the_run_id():
    manifest = jobs.job_for_run(run(activeDeadlineSeconds=600))
    assert manifest["spec"]["suspend"] is True and manifest["spec"]["activeDeadlineSeconds"] == 600
    assert manifest["metadata"]["labels"] == {"team": "x", "outrider.dev/run": "r1", "outrider.dev/target": "repo-a"}
    assert manifest["metadata"]["annotations"] == {"a": "b"}
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    pod = manifest["spec"]["template"]
    assert pod["metadata"]["labels"]["outrider.dev/run"] == "r1"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env == {"OUTRIDER_TARGET": "kept", "OUTRIDER_RUN_ID": "r1", "OUTRIDER_RUN_NAMESPACE": "ns"}  # a value the template set is kept


def test_the_run_template_is_not_modified():
    original = run()
    before = json.dumps(original, sort_keys=True)
    jobs.job_for_run(original)
    assert json.dumps(original, sort_keys=True) == before


def test_adopted_job_becomes_a_mirror_run():
    external = {"metadata": {"name": "nightly-1", "namespace": "ns", "labels": {"outrider.dev/target": "repo-a"},
                             "annotations": {"outrider.dev/model": "m", "outrider.dev/task-title": "Fix"}}}
    mirror = jobs.run_for_job(external)
    assert mirror["metadata"]["name"] == "nightly-1" and mirror["metadata"]["labels"]["outrider.dev/adopted"] == "true"
    assert mirror["spec"] == {"target": "repo-a", "jobName": "nightly-1", "model": "m", "task": {"title": "Fix"}}


def test_status_of_a_suspended_job_sets_no_phase():
    assert "phase" not in jobs.run_status(job(suspend=True))
    assert jobs.state(job(suspend=True)).active is False


def test_running_succeeded_and_failed():
    running = jobs.run_status(job({"active": 1, "startTime": "2026-01-01T00:00:00Z"}))
    assert running["phase"] == "Running" and running["startTime"] == "2026-01-01T00:00:00Z"
    done = jobs.run_status(job({"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:02:05Z",
                                "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}))
    assert (done["phase"], done["reason"], done["durationSeconds"]) == ("Succeeded", "Completed", 125)
    failed = jobs.run_status(job({"startTime": "2026-01-01T00:00:00Z", "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-01-01T00:00:10Z"}]}),
        "Traceback: boom")
    assert (failed["phase"], failed["reason"], failed["durationSeconds"], failed["errorSummary"]) == (
        "Failed", "BackoffLimitExceeded", 10, "Traceback: boom")
    assert jobs.state(job({"conditions": [{"type": "Failed", "status": "True"}]})).finished


def test_a_failed_condition_without_reason_and_a_false_condition():
    failed = jobs.run_status(job({"conditions": [{"type": "Failed", "status": "True"}]}))
    assert failed["reason"] == "JobFailed" and "durationSeconds" not in failed  # no start: no made-up duration
    assert "phase" not in jobs.run_status(job({"conditions": [{"type": "Failed", "status": "False"}]}))


def test_error_summary_is_truncated():
    summary = jobs.summarize("x" * 5000)
    assert len(summary) == jobs.ERROR_SUMMARY_MAX and summary.endswith("…")


def test_usage_from_termination_messages():
    assert jobs.usage_from_message('{"inputTokens": 10, "outputTokens": 5}') == {
        "inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
    assert jobs.usage_from_message('{"usage": {"costUSD": 1, "inputTokens": 3}}') == {"inputTokens": 3, "costUSD": 1.0}
    for text in ("plain error", "[1, 2]", '{"inputTokens": -1}', '{"inputTokens": true}', '{"other": 1}'):
        assert jobs.usage_from_message(text) is None, text


def test_termination_message_from_a_pod():
    pod = {"status": {"containerStatuses": [{"state": {"running": {}}, "lastState": {"terminated": {"message": "old"}}}]}}
    assert jobs.termination_message(pod) == "old"
    assert jobs.termination_message({"status": {}}) is None


def test_worker_pods_carry_the_labels_the_charts_network_policy_admits():
    """The chart's NetworkPolicy lets worker pods reach the control plane by a POD label (workerPodSelector)."""
    from pathlib import Path

    import yaml

    template = run()["spec"]["template"]
    template["spec"]["template"]["metadata"] = {"labels": {"outrider.dev/run": "spoofed", "app": "agent"}}
    pod_labels = jobs.job_for_run(run(template=template))["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {"app": "agent", "outrider.dev/run": "r1", "outrider.dev/target": "repo-a"}
    values = yaml.safe_load((Path(__file__).parents[2] / "charts/outrider/values.yaml").read_text())
    selector = values["networkPolicy"]["workerPodSelector"]
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "Exists" and expr["key"] in pod_labels
    for key, value in (selector.get("matchLabels") or {}).items():
        assert pod_labels.get(key) == value
