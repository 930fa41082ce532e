"""The budget rules as pure functions: limits from the spec and the ConfigMap, the gate's verdicts, pacing."""

from __future__ import annotations

import datetime as dt

import pytest

from outrider.operator import admission, autonomy, budget
from outrider.operator import breaker as breaker_mod

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
SEC = dt.timedelta(seconds=1)


def window(scope: str, name: str, limit: float | None, spent: float, resets_at: dt.datetime | None = None) -> budget.Window:
    return budget.Window(scope=scope, window=name, limit=limit, spent=spent,
                         exceeded=spent >= limit if limit is not None else None, resets_at=resets_at)


def verdict(spend: budget.Spend | None, *, target: budget.Limits | None = None, glob: budget.Limits | None = None,
            last: dt.datetime | None = None, fail_open: bool = False) -> budget.Gate:
    return budget.gate(spend, target=target, glob=glob, now=NOW, error="boom", fail_open=fail_open,
                       retry_unknown=5 * SEC, last_admitted=last)


def test_limits_from_the_spec():
    assert budget.from_spec(None) is None and budget.from_spec({"pacing": "even"}) is None
    assert budget.from_spec({"usdPerHour": 2, "pacing": "even"}) == budget.Limits(2.0, None, "even")


@pytest.mark.parametrize("raw", ["ten", "-1", "nan", "inf"])
def test_an_invalid_global_budget_fails_closed(raw):
    parsed = autonomy.parse({"data": {"enabled": "true", "budgetUsdPerDay": raw}})
    assert (parsed.enabled, parsed.reason) == (False, "ConfigInvalid") and "budgetUsdPerDay" in parsed.message


def test_a_valid_global_budget_is_read():
    parsed = autonomy.parse({"data": {"enabled": "true", "budgetUsdPerHour": "2.5", "budgetUsdPerDay": ""}})
    assert (parsed.enabled, parsed.budget_usd_per_hour, parsed.budget_usd_per_day) == (True, 2.5, None)


def test_no_budget_anywhere_is_never_held_even_without_spend():
    assert verdict(None) == budget.Gate()


def test_unknown_spend_holds_budgeted_targets_unless_fail_open():
    held = verdict(None, target=budget.Limits(per_day=1))
    assert held.hold is not None and held.hold[0] == "BudgetUnknown" and "boom" in held.hold[1]
    assert held.retry_at == NOW + 5 * SEC
    assert verdict(None, glob=budget.Limits(per_hour=1)).hold is not None  # a global budget covers every Target
    assert verdict(None, target=budget.Limits(per_day=1), fail_open=True) == budget.Gate()


def test_exceeded_holds_until_every_exceeded_window_frees_up():
    spend = budget.Spend([window("target", "1h", 1.0, 1.2, NOW + 60 * SEC), window("target", "24h", 2.0, 2.5, NOW + 600 * SEC),
                          window("global", "1h", None, 9.0)])
    gate = verdict(spend, target=budget.Limits(1.0, 2.0))
    assert gate.hold is not None and gate.hold[0] == "BudgetExceeded" and gate.retry_at == NOW + 600 * SEC
    assert "Target $1.20 of $1.00 in the last 1h" in gate.hold[1] and "frees up at 2026-01-01T12:10:00Z" in gate.hold[1]
    # A window the operator does not limit is not judged, whatever the control plane thinks.
    assert verdict(budget.Spend([window("target", "24h", 2.0, 2.5)]), target=budget.Limits(1.0, None)) == budget.Gate()


def test_a_resets_at_in_the_past_never_spins():
    gate = verdict(budget.Spend([window("global", "1h", 1.0, 1.0, NOW - SEC)]), glob=budget.Limits(per_hour=1))
    assert gate.retry_at == NOW + budget.MIN_RETRY


def test_even_pacing_spaces_admissions_by_average_run_cost():
    limits = budget.Limits(per_hour=6.0, pacing="even")
    spend = budget.Spend([window("target", "1h", 6.0, 1.0)], avg_run_cost=0.5)  # 12 Runs an hour: one per 300 s
    paced = verdict(spend, target=limits, last=NOW - 100 * SEC)
    assert paced.hold is not None and paced.hold[0] == "BudgetPaced" and paced.retry_at == NOW + 200 * SEC
    due = verdict(spend, target=limits, last=NOW - 300 * SEC)
    assert due.hold is None and due.one_at_a_time
    candidates = [admission.Candidate(n, NOW) for n in ("a", "b")]
    decisions = admission.decide(candidates, autonomy=autonomy.Autonomy(True, "hold", "", ""),
                                 target=admission.TargetLimits(max_concurrent_runs=5), breaker=breaker_mod.Breaker(),
                                 active=0, now=NOW, budget=due)
    assert [(d.admit, d.reason) for d in decisions] == [(True, "Admitted"), (False, "BudgetPaced")]


def test_budget_comes_after_the_breaker_and_before_concurrency():
    gate = budget.Gate(hold=("BudgetExceeded", "x"))
    yes = autonomy.Autonomy(True, "hold", "", "")
    tripped = breaker_mod.Breaker(state="Open", cooldown_until=NOW + 60 * SEC)
    (d,) = admission.decide([admission.Candidate("a", NOW)], autonomy=yes, target=admission.TargetLimits(),
                            breaker=tripped, active=0, now=NOW, budget=gate)
    assert d.reason == "CircuitOpen"
    (d,) = admission.decide([admission.Candidate("a", NOW)], autonomy=yes, target=admission.TargetLimits(),
                            breaker=breaker_mod.Breaker(), active=1, now=NOW, budget=gate)
    assert d.reason == "BudgetExceeded"
