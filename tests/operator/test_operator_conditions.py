"""Conditions first (issue 18), on the emulated API server: a Run's conditions through its whole life, every hold
reason on its Target's ``Admitting`` condition, and the display fields (phase, health) always read off them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from operator_harness import Cluster, Operator, wait_for

from outrider.common import k8s
from outrider.operator import admission, conditions, health, kube
from outrider.operator import autonomy as autonomy_mod
from outrider.operator import breaker as breaker_mod


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def shows_its_conditions(status: dict[str, Any]) -> None:
    """phase/reason/message are exactly what the conditions say (conditions.run_display)."""
    display = conditions.run_display(status.get("conditions"))
    assert {k: status.get(k) for k in ("phase", "reason", "message")} == display


def run_at(cluster: Cluster, name: str, phase: str, reason: str) -> dict[str, Any]:
    status = wait_for(lambda: (s := cluster.run_status(name)).get("phase") == phase and s.get("reason") == reason and s,
                      what=f"{name} {phase}/{reason}")
    shows_its_conditions(status)
    return status


def target_admitting(cluster: Cluster, status: str, reason: str, *, health_word: str) -> dict[str, Any]:
    """Wait for the Target's Admitting condition; check health is read off Ready and Ready agrees with it."""
    found = wait_for(lambda: (s := cluster.target_status("repo-a")) and conds(s).get("Admitting") == (status, reason)
                     and s.get("health") == health_word and s, what=f"Admitting={status} {reason}")
    ready = next(c for c in found["conditions"] if c["type"] == "Ready")
    assert found["health"] == conditions.target_health(found["conditions"]) == k8s.HEALTH_BY_REASON[ready["reason"]]
    assert (found["healthReason"], found["message"]) == (ready["reason"], ready["message"])
    assert ready["status"] == ("True" if health_word in (k8s.HEALTH_HEALTHY, k8s.HEALTH_IDLE) else "False")
    return found


def test_a_runs_conditions_through_its_whole_life_and_every_hold_reason_on_its_target(cluster: Cluster,
                                                                                     operator: Operator) -> None:
    cluster.autonomy(enabled="false", reason="maintenance")
    cluster.target("repo-a", maxConcurrentRuns=1, maxOpenPRs=2, circuitBreaker={"failureThreshold": 1, "cooldownSeconds": 3600})
    operator.start()
    cluster.run("r1", "repo-a")

    # Held by each reason in turn: the Run says Admitted=False with it, the Target Admitting=False with it.
    status = run_at(cluster, "r1", k8s.PHASE_PENDING, k8s.REASON_AUTONOMY_PAUSED)
    assert conds(status) == {"Admitted": ("False", "AutonomyPaused"), "Succeeded": ("Unknown", "Pending")}
    assert status["observedGeneration"] == 1
    target_admitting(cluster, "False", k8s.REASON_AUTONOMY_PAUSED, health_word=k8s.HEALTH_PAUSED)

    cluster.patch(kube.targets("default", "repo-a"), {"spec": {"paused": True}})
    cluster.autonomy(enabled="true")
    run_at(cluster, "r1", k8s.PHASE_PENDING, k8s.REASON_TARGET_PAUSED)
    target_admitting(cluster, "False", k8s.REASON_TARGET_PAUSED, health_word=k8s.HEALTH_PAUSED)

    cluster.patch(kube.targets("default", "repo-a"), {"metadata": {"annotations": {"outrider.dev/open-prs": "2"}},
                                                      "spec": {"paused": False}})
    run_at(cluster, "r1", k8s.PHASE_PENDING, k8s.REASON_MAX_OPEN_PRS)
    target_admitting(cluster, "False", k8s.REASON_MAX_OPEN_PRS, health_word=k8s.HEALTH_BLOCKED)

    # A spec change while held: the next hold is decided from the new spec and says so (observedGeneration earned).
    cluster.patch(kube.runs("default", "r1"), {"spec": {"task": {"id": "T-2"}}})
    wait_for(lambda: cluster.run_status("r1").get("observedGeneration") == 2, what="the held Run observes generation 2")

    cluster.patch(kube.targets("default", "repo-a"), {"metadata": {"annotations": {"outrider.dev/open-prs": "0"}}})
    status = run_at(cluster, "r1", k8s.PHASE_ADMITTED, k8s.REASON_ADMITTED)
    assert conds(status) == {"Admitted": ("True", "Admitted"), "Succeeded": ("Unknown", "Pending")}
    cluster.run("r2", "repo-a")
    run_at(cluster, "r2", k8s.PHASE_PENDING, k8s.REASON_CONCURRENCY_LIMIT)
    target_admitting(cluster, "False", k8s.REASON_CONCURRENCY_LIMIT, health_word=k8s.HEALTH_HEALTHY)

    cluster.start_job("r1")
    status = run_at(cluster, "r1", k8s.PHASE_RUNNING, k8s.PHASE_RUNNING)
    assert conds(status) == {"Admitted": ("True", "Admitted"), "Running": ("True", "Running"),
                             "Succeeded": ("Unknown", "Running")}

    # The spec changes while it runs: the Job mirror reports the Job, not the spec, so it earns nothing.
    cluster.patch(kube.runs("default", "r1"), {"spec": {"task": {"id": "T-3"}}})
    cluster.finish_job("r1", ok=False)
    status = run_at(cluster, "r1", k8s.PHASE_FAILED, "BackoffLimitExceeded")
    assert conds(status) == {"Admitted": ("True", "Admitted"), "Running": ("False", "BackoffLimitExceeded"),
                             "Succeeded": ("False", "BackoffLimitExceeded")}
    assert cluster.run_obj("r1")["metadata"]["generation"] == 3
    assert status["observedGeneration"] == 2
    assert {c.get("observedGeneration") for c in status["conditions"]} == {2}

    # One failure opens the breaker (failureThreshold 1): r2 is held CircuitOpen, and the Target says so.
    run_at(cluster, "r2", k8s.PHASE_PENDING, k8s.REASON_CIRCUIT_OPEN)
    target_admitting(cluster, "False", k8s.REASON_CIRCUIT_OPEN, health_word=k8s.HEALTH_BLOCKED)


def test_a_drained_run_is_pending_again_not_running(cluster: Cluster, operator: Operator) -> None:
    """The emergency stop suspends a running Job: Admitted=False (Drained) and Running=False, so the phase read off
    the conditions is Pending; admitted again and started, it is Running again."""
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    cluster.run("r1", "repo-a")
    run_at(cluster, "r1", k8s.PHASE_ADMITTED, k8s.REASON_ADMITTED)
    cluster.start_job("r1")
    run_at(cluster, "r1", k8s.PHASE_RUNNING, k8s.PHASE_RUNNING)
    cluster.autonomy(enabled="false", mode="drain")
    status = run_at(cluster, "r1", k8s.PHASE_PENDING, k8s.REASON_DRAINED)
    assert conds(status)["Running"] == ("False", k8s.REASON_DRAINED)
    assert conds(status)["Succeeded"] == ("Unknown", "Pending")
    # What the Job controller does to a suspended Job: its pods stop and its startTime is reset.
    cluster.job_status("r1", {"active": 0, "startTime": None})
    cluster.autonomy(enabled="true", mode="hold")
    run_at(cluster, "r1", k8s.PHASE_ADMITTED, k8s.REASON_ADMITTED)
    cluster.job_status("r1", {"active": 1, "startTime": "2026-12-05T12:00:00Z"})
    run_at(cluster, "r1", k8s.PHASE_RUNNING, k8s.PHASE_RUNNING)


# --- the derivations, pure -----------------------------------------------------------------------------------
NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)


def _with(*settings: tuple[str, bool | None, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for type_, status, reason in settings:
        out = conditions.set_condition(out, type_=type_, status=status, reason=reason, message=f"{type_} {reason}",
                                       now=NOW, generation=1)
    return out


@pytest.mark.parametrize(("settings", "phase", "reason"), [
    ((), None, None),
    ((("Admitted", False, "CircuitOpen"), ("Succeeded", None, "Pending")), "Pending", "CircuitOpen"),
    ((("Admitted", True, "ProbeAdmitted"), ("Succeeded", None, "Pending")), "Admitted", "ProbeAdmitted"),
    ((("Admitted", True, "Admitted"), ("Running", True, "Running"), ("Succeeded", None, "Running")), "Running", "Running"),
    ((("Admitted", False, "Drained"), ("Running", False, "Drained")), "Pending", "Drained"),
    ((("Admitted", True, "Admitted"), ("Running", True, "Running"), ("Stalled", True, "NoProgress")), "Running", "Running"),
    ((("Admitted", True, "Admitted"), ("Running", False, "Completed"), ("Succeeded", True, "Completed")), "Succeeded", "Completed"),
    ((("Succeeded", False, "InvalidSpec"),), "Failed", "InvalidSpec"),
    ((("Admitted", True, "Admitted"), ("Succeeded", False, "NoProgress")), "Failed", "NoProgress"),
    ((("Admitted", True, "Admitted"), ("Succeeded", False, "JobDeleted")), "Cancelled", "JobDeleted"),
])
def test_a_runs_phase_is_read_off_its_conditions(settings, phase, reason) -> None:
    display = conditions.run_display(_with(*settings))
    assert (display["phase"], display["reason"]) == (phase, reason)


LIMITS = admission.TargetLimits(max_concurrent_runs=1, max_open_prs=3)
ON = autonomy_mod.Autonomy(True, k8s.AUTONOMY_MODE_HOLD, "", "")


@pytest.mark.parametrize("case", [
    {"limits": admission.TargetLimits(paused=True)},
    {"autonomy": autonomy_mod.Autonomy(False, k8s.AUTONOMY_MODE_HOLD, k8s.REASON_AUTONOMY_PAUSED, "off")},
    {"autonomy": autonomy_mod.Autonomy(False, k8s.AUTONOMY_MODE_HOLD, k8s.REASON_CONFIG_MISSING, "missing")},
    {"autonomy": autonomy_mod.Autonomy(False, k8s.AUTONOMY_MODE_HOLD, k8s.REASON_CONFIG_INVALID, "invalid")},
    {"breaker": breaker_mod.Breaker(state=k8s.BREAKER_OPEN, reopened=True)},
    {"breaker": breaker_mod.Breaker(state=k8s.BREAKER_OPEN)},
    {"limits": admission.TargetLimits(max_open_prs=3, open_prs=3)},
    {"pending": 1, "budget_hold": (k8s.REASON_BUDGET_EXCEEDED, "over")},
    {"pending": 1, "budget_hold": (k8s.REASON_BUDGET_UNKNOWN, "unknown")},
    {},
    {"active": 1},
])
def test_every_health_the_rules_give_is_read_back_off_the_ready_condition(case) -> None:
    """k8s.HEALTH_BY_REASON covers every reason health.assess can give, with the same word."""
    args = {"limits": LIMITS, "autonomy": ON, "breaker": breaker_mod.Breaker(), "active": 0, "pending": 0, **case}
    h = health.assess(**args)
    ready = conditions.set_condition(None, type_=k8s.CONDITION_READY, status=h.ready, reason=h.reason, message=h.message,
                                     now=NOW, generation=1)
    assert conditions.target_health(ready) == h.health
