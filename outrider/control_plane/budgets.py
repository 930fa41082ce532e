"""LLM spend against budgets over rolling windows: what ``GET /v1/budgets`` and the budget metrics report.

Spend is the control plane's own: the sum of ``cost_usd`` of the ``run.llm_usage`` events whose event time lies
in the window ``(now - W, now]`` (W = 1 h or 24 h), read from the ``llm_calls`` table through its
``(target, time)`` and ``(time)`` indexes — one indexed range sum per scope and window. Calls without a price
count nothing. Limits are the operator's (``Target.spec.budget`` and the autonomy ConfigMap): it reports them in
``target.status`` (``budget_usd_per_hour``/``budget_usd_per_day``/``budget_pacing``) and ``operator.heartbeat``
(the global ones); this module takes the latest report. docs/concepts/budgets.md defines every figure:

- ``exceeded``: spent ≥ limit (a budget is used up when it is reached, not only when it is passed);
- ``resets_at``: when exceeded, the earliest moment at which enough of the spend already in the window has
  left it for the rest to be under the limit — the time of the oldest call that must leave, plus W. Calls
  made after ``now`` are not foreseen. Null when not exceeded or without a limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from outrider.common import events
from outrider.control_plane import schemas, status, tables
from outrider.control_plane.principals import DEFAULT_NAMESPACE

#: The rolling windows: name → length.
WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
NANO = 1_000_000_000
GLOBAL = "global"


@dataclasses.dataclass(frozen=True)
class Limits:
    """One scope's limits in USD (None: no limit in that window) and its pacing."""

    per_hour: float | None = None
    per_day: float | None = None
    pacing: str | None = None

    def of(self, window: str) -> float | None:
        return self.per_hour if window == "1h" else self.per_day


def _limit(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def limits_of(data: dict[str, Any]) -> Limits:
    """The limits an operator event carries (``target.status`` or ``operator.heartbeat`` data)."""
    pacing = data.get("budget_pacing")
    return Limits(per_hour=_limit(data.get("budget_usd_per_hour")), per_day=_limit(data.get("budget_usd_per_day")),
                  pacing=pacing if pacing in ("burst", "even") else None)


def reported_limits(heartbeat: schemas.StoredEvent | None,
                    target_statuses: list[schemas.StoredEvent]) -> tuple[Limits, dict[str, Limits]]:
    """(global limits from the latest heartbeat, per-target limits from each target's latest status)."""
    glob = limits_of(heartbeat.event.data) if heartbeat is not None else Limits()
    per_target = {s.event.target: limits_of(s.event.data) for s in target_statuses if s.event.target}
    return glob, per_target


def reported_limits_by_tenant(target_statuses: list[schemas.StoredEvent]) -> dict[tuple[str, str], Limits]:
    """Per (namespace, target), the limits of its latest status: two tenants' ``web`` are two budgets."""
    return {(s.event.namespace or DEFAULT_NAMESPACE, s.event.target): limits_of(s.event.data)
            for s in target_statuses if s.event.target}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _where(target: str | None, since: datetime, now: datetime, namespace: str | None = None) -> list[Any]:
    c = tables.llm_calls
    where = [c.c.time > since, c.c.time <= now, c.c.cost_nano_usd.is_not(None)]
    if target is not None:
        where.append(c.c.target == target)
    if namespace is not None:
        where.append(c.c.namespace == namespace)
    return where


def spent_nano(conn: sa.Connection, target: str | None, since: datetime, now: datetime, namespace: str | None = None) -> int:
    """Nano-USD spent in ``(since, now]``; ``target`` None: every call (the global scope)."""
    c = tables.llm_calls
    value = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(c.c.cost_nano_usd), 0))
                         .where(*_where(target, since, now, namespace))).scalar()
    return int(value or 0)


def resets_at(conn: sa.Connection, target: str | None, since: datetime, now: datetime, window: timedelta,
              spent: int, limit: int, namespace: str | None = None) -> datetime | None:
    """When the spend in the window first drops under ``limit`` if nothing more is spent (see module doc)."""
    if spent < limit:
        return None
    c = tables.llm_calls
    rows = conn.execute(sa.select(c.c.time, c.c.cost_nano_usd).where(*_where(target, since, now, namespace))
                        .order_by(c.c.time)).yield_per(500)
    remaining = spent
    for moment, cost in rows:
        remaining -= int(cost or 0)
        if remaining < limit:
            return _utc(moment) + window
    return None  # only if the rows changed between the two reads: unknown rather than guessed


def window_of(conn: sa.Connection, target: str | None, name: str, limit_usd: float | None,
              now: datetime, namespace: str | None = None) -> schemas.BudgetWindow:
    window = WINDOWS[name]
    since = now - window
    spent = spent_nano(conn, target, since, now, namespace)
    limit = round(limit_usd * NANO) if limit_usd is not None else None
    return schemas.BudgetWindow(
        window=name, window_seconds=int(window.total_seconds()), limit_usd=limit_usd, spent_usd=spent / NANO,
        remaining_usd=max(0, limit - spent) / NANO if limit is not None else None,
        exceeded=spent >= limit if limit is not None else None,
        resets_at=resets_at(conn, target, since, now, window, spent, limit, namespace) if limit is not None else None,
    )


def avg_run_cost(conn: sa.Connection, target: str | None, since: datetime, namespace: str | None = None) -> float | None:
    """Mean cost of the runs that finished since ``since`` with a cost (``runs`` table, completed_at index)."""
    r = tables.runs
    query = sa.select(sa.func.avg(r.c.cost_nano_usd)).where(r.c.completed_at > since, r.c.cost_nano_usd.is_not(None))
    if target is not None:
        query = query.where(r.c.target == target)
    if namespace is not None:
        query = query.where(r.c.namespace == namespace)
    value = conn.execute(query).scalar()
    return float(value) / NANO if value is not None else None


def budget_of(conn: sa.Connection, scope: str, limits: Limits, now: datetime, namespace: str | None = None) -> schemas.Budget:
    target = None if scope == GLOBAL else scope
    return schemas.Budget(scope=scope, namespace=namespace, pacing=limits.pacing,
                          avg_run_cost_usd=avg_run_cost(conn, target, now - WINDOWS["24h"], namespace),
                          windows=[window_of(conn, target, name, limits.of(name), now, namespace) for name in WINDOWS])


def spending_targets(conn: sa.Connection, since: datetime, now: datetime) -> list[tuple[str, str]]:
    """(namespace, target) of every target with priced calls in ``(since, now]``."""
    c = tables.llm_calls
    rows = conn.execute(sa.select(c.c.namespace, c.c.target).where(*_where(None, since, now), c.c.target.is_not(None)).distinct())
    return [(str(n), str(t)) for n, t in rows]


def read(conn: sa.Connection, *, now: datetime | None = None, target: str | None = None, namespace: str | None = None,
         overrides: Limits | None = None, global_overrides: Limits | None = None,
         sees: Callable[[str, str], bool] | None = None, include_global: bool = True) -> schemas.BudgetsResponse:
    """The global budget and one per (namespace, target) (those with reported limits or spend in 24 h; or just
    ``target`` in ``namespace``, default 'default').

    ``overrides`` replace the reported limits of ``target`` (or of the global scope when ``target`` is None),
    ``global_overrides`` those of the global scope: the operator asks with the limits it enforces now, which
    may be newer than its last report. ``sees`` (namespace, target) limits the targets (a reader's tenants, a
    ``?namespace=``); ``include_global`` False leaves out the global scope, every tenant's spend, which readers
    bound to namespaces or targets may not see.
    """

    moment = _utc(now or datetime.now(UTC))
    heartbeat = status._latest_of_type(conn, events.EventType.OPERATOR_HEARTBEAT.value)
    glob, _ = reported_limits(heartbeat, [])
    per_target = reported_limits_by_tenant(status.latest_target_statuses(conn))
    if overrides is not None and target is None:
        glob = overrides
    if global_overrides is not None:
        glob = global_overrides
    budgets = [budget_of(conn, GLOBAL, glob, moment)] if include_global else []
    if target is not None:
        keys = [(namespace or DEFAULT_NAMESPACE, target)]
        if overrides is not None:
            per_target[keys[0]] = overrides
    else:
        keys = sorted(set(per_target) | set(spending_targets(conn, moment - WINDOWS["24h"], moment)))
    if sees is not None:
        keys = [key for key in keys if sees(*key)]
    budgets.extend(budget_of(conn, name, per_target.get((ns, name), Limits()), moment, ns) for ns, name in keys)
    return schemas.BudgetsResponse(generated_at=moment, budgets=budgets)


def spent_by_target(conn: sa.Connection, since: datetime, now: datetime) -> dict[str | None, int]:
    """Nano-USD spent in ``(since, now]`` per target (None: calls without one), in one grouped range read."""
    c = tables.llm_calls
    rows = conn.execute(sa.select(c.c.target, sa.func.sum(c.c.cost_nano_usd)).where(*_where(None, since, now))
                        .group_by(c.c.target))
    return {target: int(value or 0) for target, value in rows}


def spend_and_limits(conn: sa.Connection, *, now: datetime | None = None) -> list[tuple[str, dict[str, tuple[int, float | None]]]]:
    """Per scope, as :func:`read` lists them: window → (nano-USD spent, limit in USD or None).

    The budget metrics need only these figures; :func:`read` also computes ``resets_at`` and the average
    run cost with a few queries per scope (~0.7 ms each: 140 ms per scrape at 200 targets). Here the spend
    of every scope comes from one grouped read per window.
    """
    moment = _utc(now or datetime.now(UTC))
    heartbeat = status._latest_of_type(conn, events.EventType.OPERATOR_HEARTBEAT.value)
    glob, per_target = reported_limits(heartbeat, status.latest_target_statuses(conn))
    spent = {name: spent_by_target(conn, moment - length, moment) for name, length in WINDOWS.items()}
    names = sorted(set(per_target) | {str(t) for t in spent["24h"] if t is not None})
    found = [(GLOBAL, {window: (sum(spent[window].values()), glob.of(window)) for window in WINDOWS})]
    for name in names:
        limits = per_target.get(name, Limits())
        found.append((name, {window: (spent[window].get(name, 0), limits.of(window)) for window in WINDOWS}))
    return found
