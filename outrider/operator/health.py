"""A Target's health in one word and one reason, so `kubectl get targets` answers "is it working?".

The rules, first match wins, are those of docs/concepts/health.md: Paused (spec.paused, or autonomy off
— the reason says which), Failed (the breaker opened again straight after a failed half-open probe),
Blocked (breaker Open — CircuitOpen; open PRs at the limit — MaxOpenPRs; Runs waiting on a budget —
BudgetExceeded, BudgetUnknown), Idle (nothing running or
waiting), Healthy (Runs active or waiting their turn). Pure: computed from values the caller supplies.
"""

from __future__ import annotations

import dataclasses

from outrider.common import k8s, timefmt
from outrider.operator import admission
from outrider.operator import autonomy as autonomy_mod
from outrider.operator import breaker as breaker_mod


@dataclasses.dataclass(frozen=True)
class Health:
    health: str
    reason: str
    message: str

    @property
    def ready(self) -> bool:
        return self.health in (k8s.HEALTH_HEALTHY, k8s.HEALTH_IDLE)


def assess(
    *,
    limits: admission.TargetLimits,
    autonomy: autonomy_mod.Autonomy,
    breaker: breaker_mod.Breaker,
    active: int,
    pending: int,
    budget_hold: tuple[str, str] | None = None,
) -> Health:
    if limits.paused:
        return Health(k8s.HEALTH_PAUSED, k8s.REASON_TARGET_PAUSED, "the Target has spec.paused: true")
    if not autonomy.enabled:
        return Health(k8s.HEALTH_PAUSED, autonomy.reason, autonomy.message)
    if breaker.state == k8s.BREAKER_OPEN and breaker.reopened:
        return Health(k8s.HEALTH_FAILED, k8s.REASON_PROBE_FAILED,
                      f"the half-open probe {breaker.last_failure_run or ''} failed "
                      f"({breaker.last_failure_reason or 'no reason'}); breaker Open again until "
                      f"{timefmt.format_time(breaker.cooldown_until)}".replace("  ", " "))
    if breaker.state == k8s.BREAKER_OPEN:
        return Health(k8s.HEALTH_BLOCKED, k8s.REASON_CIRCUIT_OPEN,
                      f"{breaker.consecutive_failures} consecutive failures (last: {breaker.last_failure_run}, "
                      f"{breaker.last_failure_reason}); cooldown until {timefmt.format_time(breaker.cooldown_until)}")
    if limits.open_prs is not None and limits.open_prs >= limits.max_open_prs:
        return Health(k8s.HEALTH_BLOCKED, k8s.REASON_MAX_OPEN_PRS,
                      f"{limits.open_prs} open pull requests; the Target allows {limits.max_open_prs}")
    if pending and budget_hold is not None and budget_hold[0] in (k8s.REASON_BUDGET_EXCEEDED, k8s.REASON_BUDGET_UNKNOWN):
        return Health(k8s.HEALTH_BLOCKED, *budget_hold)
    if active == 0 and pending == 0:
        return Health(k8s.HEALTH_IDLE, k8s.REASON_NO_RUNS, "no Run is active or waiting")
    return Health(k8s.HEALTH_HEALTHY, k8s.REASON_RUNS_ACTIVE, f"{active} active, {pending} waiting")
