"""Budgets at admission: hold a Target's Runs while its (or the global) LLM spend is at its limit.

The limits are the operator's own — ``Target.spec.budget`` and the autonomy ConfigMap's ``budgetUsdPerHour`` /
``budgetUsdPerDay`` — and the spend is the control plane's (``GET /v1/budgets``, asked with those limits so
a limit changed a moment ago counts at once). docs/concepts/budgets.md has the rules; in short:

- a window whose spend has reached its limit holds every Run of the Target with ``BudgetExceeded`` (message:
  spent/limit and when it frees up) and the Target's daemon sleeps until that ``resets_at`` (a timer);
- spend that cannot be read (no ``OUTRIDER_URL``, control plane unreachable or erroring) holds with
  ``BudgetUnknown`` — fail closed — unless ``OUTRIDER_BUDGET_FAIL_OPEN=true``; re-asked after the cache time;
- pacing ``even`` spaces admissions ``3600 × avg run cost / usdPerHour`` seconds apart (``BudgetPaced``);
- Targets without a budget, while no global budget exists, are never asked about and never held.

:func:`gate` and :func:`parse` are pure (tests feed them answers); the cached HTTP reader is
``control_plane_client.BudgetClient``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from outrider.common import k8s

logger = logging.getLogger("outrider.operator.budget")

#: Re-evaluation never comes sooner than this after a hold (clock skew with the control plane cannot spin).
MIN_RETRY = dt.timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class Limits:
    """USD limits over a rolling hour and day (None: no limit there), and the pacing."""

    per_hour: float | None = None
    per_day: float | None = None
    pacing: str = "burst"

    @property
    def any(self) -> bool:
        return self.per_hour is not None or self.per_day is not None

    def of(self, window: str) -> float | None:
        return self.per_hour if window == "1h" else self.per_day


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def from_spec(spec: dict[str, Any] | None) -> Limits | None:
    """``Target.spec.budget`` (the CRD validates it); None when it sets no limit."""
    raw = spec or {}
    limits = Limits(per_hour=_number(raw.get("usdPerHour")), per_day=_number(raw.get("usdPerDay")),
                    pacing="even" if raw.get("pacing") == "even" else "burst")
    return limits if limits.any else None


@dataclasses.dataclass(frozen=True)
class Window:
    scope: str  # "global" or the Target
    window: str  # 1h | 24h
    limit: float | None
    spent: float
    exceeded: bool | None
    resets_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Spend:
    """The control plane's answer for one Target (and the global scope)."""

    windows: list[Window]
    avg_run_cost: float | None = None  # the Target's average priced Run cost over 24 h, for even pacing


@dataclasses.dataclass(frozen=True)
class Gate:
    """Admission's budget verdict for one Target now."""

    hold: tuple[str, str] | None = None  # (reason, message) for every waiting Run
    retry_at: dt.datetime | None = None  # wake the daemon then (a timer, not polling)
    one_at_a_time: bool = False  # even pacing: at most one admission in this pass


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def gate(spend: Spend | None, *, target: Limits | None, glob: Limits | None, now: dt.datetime, error: str | None,
         fail_open: bool, retry_unknown: dt.timedelta, last_admitted: dt.datetime | None) -> Gate:
    """The verdict from the spend (None: unknown, ``error`` says why) and the limits the operator enforces."""
    scopes = {"target": target if target is not None and target.any else None,
              "global": glob if glob is not None and glob.any else None}
    if not any(scopes.values()):
        return Gate()
    if spend is None:
        if fail_open:
            return Gate()
        return Gate(hold=(k8s.REASON_BUDGET_UNKNOWN,
                          f"budget spend unavailable ({error or 'unknown'}); Runs are held until it can be read "
                          "(OUTRIDER_BUDGET_FAIL_OPEN=false)"),
                    retry_at=now + max(retry_unknown, MIN_RETRY))
    exceeded: list[Window] = []
    for window in spend.windows:
        limits = scopes["global" if window.scope == "global" else "target"]
        if limits is None or limits.of(window.window) is None:
            continue
        if window.exceeded:
            exceeded.append(window)
    if exceeded:
        frees = [w.resets_at for w in exceeded if w.resets_at is not None]
        # Every exceeded window must free up; the latest of them is when admission can resume.
        free_at = max(frees) if len(frees) == len(exceeded) else None
        parts = [f"{'global' if w.scope == 'global' else 'Target'} {_money(w.spent)} of {_money(w.limit or 0)} "
                 f"in the last {w.window}" for w in exceeded]
        when = f"frees up at {_stamp(free_at)}" if free_at else "frees up when older spend leaves the window"
        retry = max(free_at, now + MIN_RETRY) if free_at else now + max(retry_unknown, MIN_RETRY)
        return Gate(hold=(k8s.REASON_BUDGET_EXCEEDED, f"budget exceeded: {'; '.join(parts)}; {when}"), retry_at=retry)
    if scopes["target"] is not None and scopes["target"].pacing == "even":
        per_hour = scopes["target"].per_hour
        if per_hour and spend.avg_run_cost:
            interval = dt.timedelta(seconds=3600 * spend.avg_run_cost / per_hour)
            if last_admitted is not None and now < last_admitted + interval:
                next_at = last_admitted + interval
                return Gate(hold=(k8s.REASON_BUDGET_PACED,
                                  f"even pacing: one Run every {int(interval.total_seconds())}s "
                                  f"({_money(per_hour)}/h at {_money(spend.avg_run_cost)} per Run); next at "
                                  f"{_stamp(next_at)}"), retry_at=max(next_at, now + MIN_RETRY))
        return Gate(one_at_a_time=True)
    return Gate()


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse(document: dict[str, Any], target: str) -> Spend:
    """The parts of a ``GET /v1/budgets`` answer that concern ``target`` and the global scope."""
    windows: list[Window] = []
    avg: float | None = None
    for budget in document["budgets"]:
        scope = budget["scope"]
        if scope not in ("global", target):
            continue
        if scope == target and isinstance(budget.get("avg_run_cost_usd"), int | float):
            avg = float(budget["avg_run_cost_usd"])
        for w in budget["windows"]:
            windows.append(Window(scope="global" if scope == "global" else "target", window=str(w["window"]),
                                  limit=w.get("limit_usd"), spent=float(w["spent_usd"]), exceeded=w.get("exceeded"),
                                  resets_at=_time(w.get("resets_at"))))
    return Spend(windows=windows, avg_run_cost=avg)
