"""The Run and Target CRDs accept good specs (with their defaults) and reject bad ones, as an API server would."""

from __future__ import annotations

import copy
import re

import jsonschema
import operator_crd_schema as crds
import pytest

from outrider.common import k8s

JOB_TEMPLATE = {
    "spec": {
        "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "agent:1"}]}},
    }
}


def run(**spec):
    return {"apiVersion": k8s.API_VERSION, "kind": "Run", "metadata": {"name": "r1"}, "spec": spec}


def target(**spec):
    return {"apiVersion": k8s.API_VERSION, "kind": "Target", "metadata": {"name": "t1"}, "spec": spec}


def test_crd_names_match_the_shared_constants():
    for kind, plural in ((k8s.RUN_KIND, k8s.RUN_PLURAL), (k8s.TARGET_KIND, k8s.TARGET_PLURAL)):
        crd = crds.load_crd(kind)
        assert crd["metadata"]["name"] == f"{plural}.{k8s.GROUP}"
        assert crd["spec"]["group"] == k8s.GROUP
        assert crd["spec"]["names"]["kind"] == kind
        assert crd["spec"]["scope"] == "Namespaced"
        (version,) = crd["spec"]["versions"]
        assert version["name"] == k8s.VERSION and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}


def test_printer_columns_are_the_ones_the_issue_asks_for():
    def columns(kind):
        (version,) = crds.load_crd(kind)["spec"]["versions"]
        return [c["name"].upper() for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]

    assert columns("Run") == ["TARGET", "PHASE", "DURATION", "TOKENS", "COST", "REASON", "AGE"]
    assert columns("Target") == ["HEALTH", "BREAKER", "FAILURES", "ACTIVE", "OPEN-PRS", "ADMITTING", "REASON", "AGE"]


def test_printer_columns_point_at_declared_fields():
    for kind in ("Run", "Target"):
        schema = crds.schema_of(kind)
        (version,) = crds.load_crd(kind)["spec"]["versions"]
        for column in version["additionalPrinterColumns"]:
            # A condition's field: `.status.conditions[?(@.type=="Ready")].status` (the filter picks a list item).
            path = re.sub(r'\[\?\(@\.type=="\w+"\)\]', ".[]", column["jsonPath"]).lstrip(".").split(".")
            if path[0] == "metadata":
                continue
            node = schema
            for part in path:
                node = node["items"] if part == "[]" else node["properties"][part]
            assert node["type"] in ("string", "integer", "number", "boolean"), column


def test_a_minimal_run_is_valid():
    stored = crds.validate("Run", run(target="repo-a", template=JOB_TEMPLATE))
    assert stored["spec"]["target"] == "repo-a"


def test_a_full_run_is_valid():
    crds.validate(
        "Run",
        run(
            target="repo-a",
            task={"id": "T-1", "title": "Fix the flaky test"},
            agent="coder",
            model="claude-sonnet-4",
            activeDeadlineSeconds=3600,
            template={"metadata": {"labels": {"team": "x"}}, **JOB_TEMPLATE},
        ),
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"template": JOB_TEMPLATE},  # no target
        {"target": "", "template": JOB_TEMPLATE},
        {"target": "Repo_A", "template": JOB_TEMPLATE},  # not a DNS label
        {"target": "-repo", "template": JOB_TEMPLATE},
        {"target": "a" * 64, "template": JOB_TEMPLATE},
        {"target": "repo", "activeDeadlineSeconds": 0, "template": JOB_TEMPLATE},
        {"target": "repo", "template": {"spec": {"backoffLimit": -1, "template": {}}}},
        {"target": "repo", "template": {"spec": {"backoffLimit": 1}}},  # a JobSpec needs its pod template
        {"target": 7, "template": JOB_TEMPLATE},
    ],
)
def test_invalid_runs_are_rejected(spec):
    with pytest.raises(jsonschema.ValidationError):
        crds.validate("Run", run(**spec))


def test_run_status_rejects_an_unknown_phase():
    obj = run(target="repo", template=JOB_TEMPLATE)
    obj["status"] = {"phase": "Exploded"}
    with pytest.raises(jsonschema.ValidationError):
        crds.validate("Run", obj)


def test_a_target_gets_its_defaults():
    stored = crds.validate("Target", target())
    assert stored["spec"] == {
        "paused": False,
        "maxConcurrentRuns": 1,
        "maxOpenPRs": 2,
        "circuitBreaker": {"failureThreshold": 2, "cooldownSeconds": 1800},
    }
    stored = crds.validate("Target", {"apiVersion": k8s.API_VERSION, "kind": "Target", "metadata": {"name": "t"}})
    assert stored["spec"]["circuitBreaker"]["cooldownSeconds"] == 1800


def test_a_target_keeps_what_it_was_given_and_accepts_a_budget():
    stored = crds.validate(
        "Target",
        target(
            description="github.com/acme/api",
            paused=True,
            maxConcurrentRuns=3,
            maxOpenPRs=5,
            circuitBreaker={"failureThreshold": 4},
            budget={"usdPerHour": 2.5, "usdPerDay": 20},
        ),
    )
    assert stored["spec"]["circuitBreaker"] == {"failureThreshold": 4, "cooldownSeconds": 1800}
    assert stored["spec"]["budget"] == {"usdPerHour": 2.5, "usdPerDay": 20, "pacing": "burst"}


@pytest.mark.parametrize(
    "spec",
    [
        {"maxConcurrentRuns": 0},
        {"maxOpenPRs": 0},
        {"paused": "yes"},
        {"circuitBreaker": {"failureThreshold": 0}},
        {"circuitBreaker": {"cooldownSeconds": 0}},
        {"circuitBreaker": {"cooldownSeconds": 1.5}},
        {"budget": {"usdPerHour": -1}},
        {"budget": {"pacing": "sometimes"}},
    ],
)
def test_invalid_targets_are_rejected(spec):
    with pytest.raises(jsonschema.ValidationError):
        crds.validate("Target", target(**spec))


def full_target_status():
    return {
        "observedGeneration": 3,
        "health": "Blocked",
        "healthReason": "CircuitOpen",
        "message": "2 consecutive failures",
        "breaker": {
            "state": "Open",
            "consecutiveFailures": 2,
            "trips": 1,
            "trippedAt": "2026-01-01T00:00:00Z",
            "cooldownUntil": "2026-01-01T00:30:00Z",
            "probeRun": "r9",
            "reopened": False,
            "lastFailure": {"run": "r2", "reason": "BackoffLimitExceeded", "time": "2026-01-01T00:00:00Z"},
        },
        "activeRuns": 0,
        "pendingRuns": 2,
        "openPRs": 1,
        "lastRunTime": "2026-01-01T00:00:00Z",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "CircuitOpen", "message": "m",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3},
        ],
    }


def full_run_status():
    return {
        "observedGeneration": 1,
        "phase": "Failed",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "jobName": "r1",
        "probe": True,
        "breakerRecorded": True,
        "admittedAt": "2026-01-01T00:00:00Z",
        "startTime": "2026-01-01T00:00:01Z",
        "completionTime": "2026-01-01T00:01:01Z",
        "durationSeconds": 60,
        "errorSummary": "boom",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, "costUSD": 0.01},
        "conditions": [
            {"type": t, "status": "False", "reason": "R", "message": "m",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
            for t in ("Admitted", "Running", "Succeeded")
        ],
    }


def test_every_status_field_the_operator_writes_is_declared():
    """Real API servers prune undeclared status fields silently; nothing here may be pruned."""
    obj = target()
    obj["status"] = full_target_status()
    crds.validate("Target", obj)
    assert crds.unknown_fields(obj, crds.schema_of("Target")) == []
    obj = run(target="repo", template=JOB_TEMPLATE)
    obj["status"] = full_run_status()
    crds.validate("Run", obj)
    assert crds.unknown_fields(obj, crds.schema_of("Run")) == []


def test_the_pod_template_keeps_unknown_fields():
    obj = run(target="repo", template=copy.deepcopy(JOB_TEMPLATE))
    obj["spec"]["template"]["spec"]["parallelism"] = 1
    assert crds.unknown_fields(obj, crds.schema_of("Run")) == []
    obj["spec"]["colour"] = "red"
    assert crds.unknown_fields(obj, crds.schema_of("Run")) == [".spec.colour"]


def test_cel_rules_are_present():
    """CEL (x-kubernetes-validations) is enforced by real API servers, not by jsonschema: check the rules exist."""
    run_schema = crds.schema_of("Run")
    assert any("name.size() <= 63" in r["rule"] for r in run_schema["x-kubernetes-validations"])
    assert any(re.search(r"has\(self.template\) \|\| has\(self.jobName\)", r["rule"])
               for r in run_schema["properties"]["spec"]["x-kubernetes-validations"])


def _cel(rule: str, new: object, old: object = None) -> bool:
    """A CRD validation rule evaluated as the API server would (cel-python; ``oldSelf`` for transition rules)."""
    import celpy

    env = celpy.Environment()
    activation = {"self": celpy.json_to_cel(new)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    return bool(env.program(env.compile(rule)).evaluate(activation))


def test_cel_rules_hold_and_refuse_as_intended():
    run_schema = crds.schema_of("Run")
    (name_rule,) = run_schema["x-kubernetes-validations"]
    assert _cel(name_rule["rule"], {"metadata": {"name": "r" * 63}}) and not _cel(name_rule["rule"], {"metadata": {"name": "r" * 64}})
    (spec_rule,) = run_schema["properties"]["spec"]["x-kubernetes-validations"]
    assert _cel(spec_rule["rule"], {"jobName": "j"}) and not _cel(spec_rule["rule"], {"target": "t"})
    # spec.template is immutable: the Job was built from it (issue 18).
    (frozen,) = run_schema["properties"]["spec"]["properties"]["template"]["x-kubernetes-validations"]
    template = copy.deepcopy(JOB_TEMPLATE)
    changed = copy.deepcopy(JOB_TEMPLATE)
    changed["spec"]["backoffLimit"] = 7
    assert _cel(frozen["rule"], template, copy.deepcopy(template))
    assert not _cel(frozen["rule"], changed, template)
    assert "cannot change" in frozen["message"]


def test_conditions_follow_metav1_condition():
    """reason, message and lastTransitionTime are required; reasons are CamelCase; a list has at most 16."""
    good = {"type": "Admitted", "status": "True", "reason": "Admitted", "message": "ok",
            "lastTransitionTime": "2026-12-05T12:00:00Z", "observedGeneration": 1}
    obj = run(target="repo", template=copy.deepcopy(JOB_TEMPLATE))
    obj["status"] = {"conditions": [good]}
    crds.validate("Run", obj)
    for broken in ({k: v for k, v in good.items() if k != "reason"}, {**good, "reason": "not a reason"},
                   {**good, "observedGeneration": -1}, {**good, "message": "x" * 32769}):
        obj["status"] = {"conditions": [broken]}
        with pytest.raises(jsonschema.ValidationError):
            crds.validate("Run", obj)
    obj["status"] = {"conditions": [{**good, "type": f"T{i}"} for i in range(17)]}
    with pytest.raises(jsonschema.ValidationError):
        crds.validate("Run", obj)
