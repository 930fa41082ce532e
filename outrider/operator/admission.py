"""Which held Runs may start now, and for every Run that may not, the one reason why.

A Run's Job is created suspended; admission unsuspends it. The rules (docs/concepts/admission.md) are
checked in a fixed order so each held Run shows exactly one reason: autonomy (AutonomyPaused, or
ConfigMissing/ConfigInvalid when the ConfigMap is absent or broken), the Target (TargetNotFound,
TargetPaused), its circuit breaker (CircuitOpen; HalfOpen admits a single probe), its open pull requests
(MaxOpenPRs), its budget (BudgetExceeded, BudgetUnknown, BudgetPaced — budget.py) and its concurrency
(ConcurrencyLimit). Runs are considered oldest first. Pure: the caller
supplies the cluster's current counts, so the same function serves the operator and its unit tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from outrider.common import k8s, timefmt
from outrider.operator import autonomy as autonomy_mod
from outrider.operator import breaker as breaker_mod
from outrider.operator import budget as budget_mod


@dataclasses.dataclass(frozen=True)
class TargetLimits:
    """The parts of a Target's spec that admission reads."""

    paused: bool = False
    max_concurrent_runs: int = 1
    max_open_prs: int = 2
    open_prs: int | None = None  # None: nobody reports open PRs for this Target


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A Run waiting for admission."""

    name: str
    created: dt.datetime


@dataclasses.dataclass(frozen=True)
class Decision:
    run: str
    admit: bool
    reason: str  # Admitted / ProbeAdmitted, or one hold reason
    message: str
    probe: bool = False


def order(candidates: list[Candidate]) -> list[Candidate]:
    """Oldest first; the name breaks ties so the order is the same on every replica and restart."""
    return sorted(candidates, key=lambda c: (c.created, c.name))


def decide(
    candidates: list[Candidate],
    *,
    autonomy: autonomy_mod.Autonomy,
    target: TargetLimits | None,
    breaker: breaker_mod.Breaker,
    active: int,
    now: dt.datetime,
    budget: budget_mod.Gate | None = None,
) -> list[Decision]:
    """One decision per candidate, oldest first. ``active`` counts the Target's admitted, unfinished Jobs."""
    ordered = order(candidates)
    if not autonomy.enabled:
        return [Decision(c.name, False, autonomy.reason, autonomy.message) for c in ordered]
    if target is None:
        return [Decision(c.name, False, k8s.REASON_TARGET_NOT_FOUND, "the Run's Target does not exist in its namespace")
                for c in ordered]
    if target.paused:
        return [Decision(c.name, False, k8s.REASON_TARGET_PAUSED, "the Target has spec.paused: true") for c in ordered]

    decisions: list[Decision] = []
    current = breaker
    running = active
    for candidate in ordered:
        may, probe = breaker_mod.allows(current, now)
        if not may:
            decisions.append(Decision(candidate.name, False, k8s.REASON_CIRCUIT_OPEN, _breaker_message(current, now)))
            continue
        if target.open_prs is not None and target.open_prs >= target.max_open_prs:
            decisions.append(Decision(candidate.name, False, k8s.REASON_MAX_OPEN_PRS,
                                      f"{target.open_prs} open pull requests; the Target allows {target.max_open_prs}"))
            continue
        if budget is not None and budget.hold is not None:
            decisions.append(Decision(candidate.name, False, *budget.hold))
            continue
        if budget is not None and budget.one_at_a_time and running > active:
            decisions.append(Decision(candidate.name, False, k8s.REASON_BUDGET_PACED,
                                      "even pacing: one Run admitted at a time; this one is next"))
            continue
        if running >= target.max_concurrent_runs:
            decisions.append(Decision(candidate.name, False, k8s.REASON_CONCURRENCY_LIMIT,
                                      f"{running} of {target.max_concurrent_runs} concurrent Runs already active"))
            continue
        if probe:
            current = breaker_mod.admit_probe(breaker_mod.advance(current, now)[0], candidate.name)
            decisions.append(Decision(candidate.name, True, k8s.REASON_PROBE_ADMITTED,
                                      "admitted as the circuit breaker's half-open probe", probe=True))
        else:
            decisions.append(Decision(candidate.name, True, k8s.REASON_ADMITTED, "admitted"))
        running += 1
    return decisions


def _breaker_message(breaker: breaker_mod.Breaker, now: dt.datetime) -> str:
    if breaker.state == k8s.BREAKER_OPEN and breaker.cooldown_until is not None:
        left = max(0, int((breaker.cooldown_until - now).total_seconds()))
        return (f"circuit breaker Open after {breaker.consecutive_failures} consecutive failures; "
                f"a probe Run is admitted at {timefmt.format_time(breaker.cooldown_until)} (in {left}s)")
    if breaker.probe_run:
        return f"circuit breaker HalfOpen: waiting for the probe Run {breaker.probe_run} to finish"
    return "circuit breaker is not Closed"
