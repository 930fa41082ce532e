"""LLM spend against budgets over rolling windows: what ``GET /v1/budgets`` and the budget metrics report.

Spend is the control plane's own: the sum of ``cost_usd`` of the ``run.llm_usage`` events whose event time lies
in the window ``(now - W, now]`` (W = 1 h or 24 h), exactly. Whole minutes inside the window are read from
the projector's per-minute rollup (``rollup_spend``: at most 1,440 rows per scope and day, however many
calls); the two partial minutes at the window's edges, and every call the projector has not folded yet, are
read from the event log itself (``Spend``). So a budget check never under-counts however far the projection
lags: each call in the log is counted once, in the rollup or from the log, both read for one checkpoint
(``consistent``). Calls without a price count nothing. (Budgets therefore need the log of the last 24 h:
``retention_days`` is at least 1.) Limits are the operator's (``Target.spec.budget`` and the autonomy ConfigMap): it reports them in
``target.status`` (``budget_usd_per_hour``/``budget_usd_per_day``/``budget_pacing``) and ``operator.heartbeat``
(the global ones); this module takes the latest report. docs/concepts/budgets.md defines every figure:

- ``exceeded``: spent ≥ limit (a budget is used up when it is reached, not only when it is passed);
- ``resets_at``: when exceeded, the earliest moment at which enough of the spend already in the window has
  left it for the rest to be under the limit — the time of the oldest call that must leave, plus W. Calls
  made after ``now`` are not foreseen. Null when not exceeded or without a limit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from outrider.common import events
from outrider.control_plane import schemas, status, tables
from outrider.control_plane.principals import DEFAULT_NAMESPACE
from outrider.control_plane.store import log_format, rollups

#: The rolling windows: name → length.
WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
NANO = 1_000_000_000
GLOBAL = "global"
#: The scope the budget metrics sum the targets beyond their label bound under.
OTHER_SCOPE = "other"


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


Call = tuple[str, str | None, datetime, int]  # (namespace, target, time, nano-USD) of one priced call


def checkpoint(conn: sa.Connection) -> int:
    s = tables.projector_state
    return int(conn.execute(sa.select(s.c.position).where(s.c.id == 1)).scalar() or 0)


def _calls(conn: sa.Connection, *conditions: Any) -> list[Call]:
    """Priced ``run.llm_usage`` calls from the log matching ``conditions`` (on the events table)."""
    e = tables.events
    rows = conn.execute(sa.select(e.c.namespace, e.c.target, e.c.body).where(e.c.type == events.EventType.RUN_LLM_USAGE.value, *conditions))
    found = []
    for namespace, target, body in rows:
        event = json.loads(body)
        cost = (event.get("data") or {}).get("cost_usd")
        if cost is None:
            continue
        try:
            nano = round(float(cost) * NANO)
        except (TypeError, ValueError):
            continue
        found.append((str(namespace), target, _utc(datetime.fromisoformat(event["time"])), nano))
    return found


def _tail_calls(conn: sa.Connection, position: int, since: datetime, now: datetime) -> list[Call]:
    """Priced ``run.llm_usage`` calls in ``(since, now]`` that the log holds after ``position`` (not projected yet)."""
    g = tables.event_log
    found = []
    for first, body, skip in conn.execute(sa.select(g.c.seq, g.c.body, g.c.skip).where(g.c.seq > position)):
        try:
            numbered = log_format.explode(int(first), body, skip)
        except ValueError:  # a damaged row: the projector skips it too (and says so)
            continue
        for seq, event in numbered:
            if seq <= position or not isinstance(event, dict) or event.get("type") != events.EventType.RUN_LLM_USAGE.value:
                continue
            cost: Any = (event.get("data") or {}).get("cost_usd")
            try:
                nano, moment = round(float(cost) * NANO), _utc(datetime.fromisoformat(event["time"]))
            except (TypeError, ValueError, KeyError):
                continue
            if since < moment <= now:
                found.append((str(event.get("namespace") or DEFAULT_NAMESPACE), event.get("target"), moment, nano))
    return found


@dataclasses.dataclass
class Spend:
    """The priced calls of one rolling window ``(since, now]``, read once: whole minutes from the projector's
    rollup (``first``..``last``), and from the log the calls of the two partial minutes at the window's edges
    (exact to the microsecond) plus those the projector has not folded yet (``exact``)."""

    since: datetime
    now: datetime
    first: int
    last: int
    exact: list[Call]

    @classmethod
    def read(cls, conn: sa.Connection, since: datetime, now: datetime) -> Spend:
        e = tables.events
        position = checkpoint(conn)
        edge_start, edge_end = rollups.minute_of(since.timestamp()), rollups.minute_of(now.timestamp())
        since, now = since.astimezone(UTC), now.astimezone(UTC)
        first_minute_end = datetime.fromtimestamp((edge_start + 1) * rollups.MINUTE, UTC)
        last_minute_start = datetime.fromtimestamp(edge_end * rollups.MINUTE, UTC)
        # The unprojected tail from the log first (the checkpoint only moves on: whatever the projector adds
        # meanwhile is then in both, counted twice rather than never; ``consistent`` reads again), then the two
        # edge minutes from the per-event index by (type, time), which holds the projected events only.
        exact = (_tail_calls(conn, position, since, now)
                 + _calls(conn, e.c.time > since, e.c.time < first_minute_end)
                 + _calls(conn, e.c.time >= max(last_minute_start, first_minute_end), e.c.time <= now))
        return cls(since, now, edge_start + 1, edge_end - 1, exact)

    def _where(self, target: str | None, namespace: str | None) -> list[Any]:
        m = tables.rollup_spend
        where = [m.c.minute >= self.first, m.c.minute <= self.last]
        if target is not None:
            where.append(m.c.target == target)
        if namespace is not None:
            where.append(m.c.namespace == namespace)
        return where

    def _exact(self, target: str | None, namespace: str | None) -> list[Call]:
        return [c for c in self.exact if (target is None or c[1] == target) and (namespace is None or c[0] == namespace)]

    def spent(self, conn: sa.Connection, target: str | None, namespace: str | None = None) -> int:
        """Nano-USD spent in the window; ``target`` None: every call (the global scope)."""
        m = tables.rollup_spend
        folded = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(m.c.cost_nano_usd), 0)).where(*self._where(target, namespace))).scalar()
        return int(folded or 0) + sum(c[3] for c in self._exact(target, namespace))

    def by_target(self, conn: sa.Connection) -> dict[str | None, int]:
        """Nano-USD per target (None: calls without one), one grouped read of the rollup."""
        m = tables.rollup_spend
        spent: dict[str | None, int] = {}
        for target, value in conn.execute(sa.select(m.c.target, sa.func.sum(m.c.cost_nano_usd)).where(*self._where(None, None)).group_by(m.c.target)):
            spent[target or None] = spent.get(target or None, 0) + int(value or 0)
        for _, target, _, nano in self.exact:
            spent[target] = spent.get(target, 0) + nano
        return spent

    def by_tenant(self, conn: sa.Connection) -> dict[tuple[str, str | None], int]:
        """Nano-USD per (namespace, target) (target None: calls without one), one grouped read of the rollup."""
        m = tables.rollup_spend
        spent: dict[tuple[str, str | None], int] = {}
        rows = conn.execute(sa.select(m.c.namespace, m.c.target, sa.func.sum(m.c.cost_nano_usd)).where(*self._where(None, None))
                            .group_by(m.c.namespace, m.c.target))
        for namespace, target, value in rows:
            key = (str(namespace), target or None)
            spent[key] = spent.get(key, 0) + int(value or 0)
        for namespace, target, _, nano in self.exact:
            spent[(namespace, target)] = spent.get((namespace, target), 0) + nano
        return spent

    def targets(self, conn: sa.Connection) -> set[tuple[str, str]]:
        m = tables.rollup_spend
        found = {(str(n), str(t)) for n, t in conn.execute(sa.select(m.c.namespace, m.c.target).where(*self._where(None, None), m.c.target != "").distinct())}
        found.update((ns, t) for ns, t, _, _ in self.exact if t)
        return found

    def resets_at(self, conn: sa.Connection, target: str | None, namespace: str | None, window: timedelta, spent: int,
                  limit: int) -> datetime | None:
        """When the spend first drops under ``limit`` if nothing more is spent: the time of the oldest call that
        must leave, plus the window. A rolled-up minute is looked up in the log to find that call's exact time;
        if the log no longer has its calls, the end of the minute is given (later, never earlier)."""
        if spent < limit:
            return None
        m = tables.rollup_spend
        items: list[tuple[datetime, int, int | None]] = [(c[2], c[3], None) for c in self._exact(target, namespace)]
        items.extend((datetime.fromtimestamp((minute + 1) * rollups.MINUTE, UTC), int(cost or 0), int(minute)) for minute, cost in conn.execute(
            sa.select(m.c.minute, sa.func.sum(m.c.cost_nano_usd)).where(*self._where(target, namespace)).group_by(m.c.minute)))
        remaining = spent
        for moment, cost, minute in sorted(items, key=lambda item: item[0]):
            if remaining - cost >= limit:
                remaining -= cost
                continue
            if minute is None:
                return moment + window
            return self._within(conn, minute, target, namespace, remaining, cost, limit) + window
        return None  # only if the rows changed between the reads: unknown rather than guessed

    def _within(self, conn: sa.Connection, minute: int, target: str | None, namespace: str | None, remaining: int,
                cost: int, limit: int) -> datetime:
        e = tables.events
        start = datetime.fromtimestamp(minute * rollups.MINUTE, UTC)
        end = datetime.fromtimestamp((minute + 1) * rollups.MINUTE, UTC)
        calls = sorted((c for c in _calls(conn, e.c.time >= start, e.c.time < end)
                        if (target is None or c[1] == target) and (namespace is None or c[0] == namespace)), key=lambda c: c[2])
        if sum(c[3] for c in calls) != cost:
            return end  # the log no longer holds this minute exactly (retention): its end, never earlier
        for _, _, moment, nano in calls:
            remaining -= nano
            if remaining < limit:
                return moment
        return end


def window_of(conn: sa.Connection, target: str | None, name: str, limit_usd: float | None,
              now: datetime, namespace: str | None = None) -> schemas.BudgetWindow:
    window = WINDOWS[name]
    since = now - window
    limit = round(limit_usd * NANO) if limit_usd is not None else None

    def read() -> tuple[int, datetime | None]:
        spend = Spend.read(conn, since, now)
        spent = spend.spent(conn, target, namespace)
        return spent, spend.resets_at(conn, target, namespace, window, spent, limit) if limit is not None else None

    spent, resets = consistent(conn, read)
    return schemas.BudgetWindow(
        window=name, window_seconds=int(window.total_seconds()), limit_usd=limit_usd, spent_usd=spent / NANO,
        remaining_usd=max(0, limit - spent) / NANO if limit is not None else None,
        exceeded=spent >= limit if limit is not None else None,
        resets_at=resets,
    )


def consistent(conn: sa.Connection, read: Callable[[], Any], attempts: int = 5) -> Any:
    """``read()`` (the log's calls first, then the rollup) again while the checkpoint moved during it, so both
    describe the same checkpoint. After ``attempts`` the last result stands: it may count a batch twice (too
    much), never miss one."""
    result = None
    for _ in range(attempts):
        before = checkpoint(conn)
        result = read()
        if checkpoint(conn) == before:
            break
    return result


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


@dataclasses.dataclass
class AllScopes:
    """Every scope's spend per window and average run cost, read once for a listing of all budgets (a grouped
    read per window, not a few queries per scope and window)."""

    now: datetime
    spends: dict[str, Spend]
    spent: dict[str, dict[tuple[str, str | None], int]]
    averages: dict[tuple[str, str | None], float]

    @classmethod
    def read(cls, conn: sa.Connection, now: datetime) -> AllScopes:
        def windows() -> tuple[dict[str, Spend], dict[str, dict[tuple[str, str | None], int]]]:
            spends = {name: Spend.read(conn, now - length, now) for name, length in WINDOWS.items()}
            return spends, {name: spend.by_tenant(conn) for name, spend in spends.items()}

        spends, spent = consistent(conn, windows)
        r = tables.runs
        # The day's priced runs first (the completed_at index), grouped after: asked in one statement, SQLite walks
        # the primary key for the grouping and reads every run (55 ms at 10^5 runs instead of 4).
        finished = (sa.select(r.c.namespace, r.c.target, r.c.cost_nano_usd)
                    .where(r.c.completed_at > now - WINDOWS["24h"], r.c.cost_nano_usd.is_not(None))
                    .cte("finished").prefix_with("MATERIALIZED"))
        averages = {(str(ns), t): float(avg) / NANO for ns, t, avg in conn.execute(
            sa.select(finished.c.namespace, finished.c.target, sa.func.avg(finished.c.cost_nano_usd))
            .group_by(finished.c.namespace, finished.c.target))
            if avg is not None}
        return cls(now, spends, spent, averages)

    def budget(self, conn: sa.Connection, scope: str, limits: Limits, namespace: str | None = None) -> schemas.Budget:
        target = None if scope == GLOBAL else scope
        windows = []
        for name, length in WINDOWS.items():
            limit_usd = limits.of(name)
            limit = round(limit_usd * NANO) if limit_usd is not None else None
            by_tenant = self.spent[name]
            spent = sum(by_tenant.values()) if target is None else by_tenant.get((namespace or DEFAULT_NAMESPACE, target), 0)
            resets = (self.spends[name].resets_at(conn, target, namespace if target is not None else None, length, spent, limit)
                      if limit is not None else None)
            windows.append(schemas.BudgetWindow(
                window=name, window_seconds=int(length.total_seconds()), limit_usd=limit_usd, spent_usd=spent / NANO,
                remaining_usd=max(0, limit - spent) / NANO if limit is not None else None,
                exceeded=spent >= limit if limit is not None else None, resets_at=resets))
        if target is None:  # the global mean is over every run, not a mean of means: one more read
            return schemas.Budget(scope=scope, namespace=namespace, pacing=limits.pacing,
                                  avg_run_cost_usd=avg_run_cost(conn, None, self.now - WINDOWS["24h"]), windows=windows)
        return schemas.Budget(scope=scope, namespace=namespace, pacing=limits.pacing,
                              avg_run_cost_usd=self.averages.get((namespace or DEFAULT_NAMESPACE, target)), windows=windows)


def spending_targets(conn: sa.Connection, since: datetime, now: datetime) -> list[tuple[str, str]]:
    """(namespace, target) of every target with priced calls in ``(since, now]``."""
    return sorted(Spend.read(conn, since, now).targets(conn))


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
    if target is not None:  # one scope (the operator's admission check): a few indexed reads
        budgets = [budget_of(conn, GLOBAL, glob, moment)] if include_global else []
        key = (namespace or DEFAULT_NAMESPACE, target)
        if overrides is not None:
            per_target[key] = overrides
        if sees is None or sees(*key):
            budgets.append(budget_of(conn, target, per_target.get(key, Limits()), moment, key[0]))
        return schemas.BudgetsResponse(generated_at=moment, budgets=budgets)
    every = AllScopes.read(conn, moment)
    budgets = [every.budget(conn, GLOBAL, glob)] if include_global else []
    spending = {(ns, t) for ns, t in every.spent["24h"] if t}
    keys = sorted(set(per_target) | spending)
    if sees is not None:
        keys = [key for key in keys if sees(*key)]
    budgets.extend(every.budget(conn, name, per_target.get((ns, name), Limits()), ns) for ns, name in keys)
    return schemas.BudgetsResponse(generated_at=moment, budgets=budgets)


def spent_by_target(conn: sa.Connection, since: datetime, now: datetime) -> dict[str | None, int]:
    """Nano-USD spent in ``(since, now]`` per target (None: calls without one)."""
    return Spend.read(conn, since, now).by_target(conn)


def spend_and_limits(conn: sa.Connection, *, now: datetime | None = None,
                     max_scopes: int | None = None) -> list[tuple[str, dict[str, tuple[int, float | None]]]]:
    """Per scope, as :func:`read` lists them: window → (nano-USD spent, limit in USD or None).

    With ``max_scopes`` (the budget metrics: a scope is a label value), the Targets the operator reported keep
    their scope, then the biggest spenders of the last 24 h, ``max_scopes`` targets in all; the rest are summed
    under ``other`` (no limit), so the global figures and the sum over scopes stay exact.

    The budget metrics need only these figures; :func:`read` also computes ``resets_at`` and the average
    run cost with a few queries per scope (~0.7 ms each: 140 ms per scrape at 200 targets). Here the spend
    of every scope comes from one grouped read per window.
    """
    moment = _utc(now or datetime.now(UTC))
    heartbeat = status._latest_of_type(conn, events.EventType.OPERATOR_HEARTBEAT.value)
    glob, per_target = reported_limits(heartbeat, status.latest_target_statuses(conn))
    spent = consistent(conn, lambda: {name: spent_by_target(conn, moment - length, moment) for name, length in WINDOWS.items()})
    names = sorted(set(per_target) | {str(t) for t in spent["24h"] if t is not None})
    found = [(GLOBAL, {window: (sum(spent[window].values()), glob.of(window)) for window in WINDOWS})]
    if max_scopes is not None and len(names) > max_scopes:
        by_spend = sorted((n for n in names if n not in per_target), key=lambda n: (-spent["24h"].get(n, 0), n))
        kept = set(list(per_target)[:max_scopes]) | set(by_spend[: max(0, max_scopes - len(per_target))])
        rest = [n for n in names if n not in kept]
        names = sorted(kept)
    else:
        rest = []
    for name in names:
        limits = per_target.get(name, Limits())
        found.append((name, {window: (spent[window].get(name, 0), limits.of(window)) for window in WINDOWS}))
    if rest:
        found.append((OTHER_SCOPE, {window: (sum(spent[window].get(n, 0) for n in rest), None) for window in WINDOWS}))
    return found
