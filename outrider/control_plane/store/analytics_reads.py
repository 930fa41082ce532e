"""Reads for summaries and analytics: run facts, trends, model facts, errors, the run graph, and the counters
``/metrics`` exports. They read the projector's rollups (``store.rollups``, ``store.run_rollups``), so their cost
follows the rollup rows, not the number of events."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from outrider.common import events
from outrider.control_plane import projection, tables
from outrider.control_plane.store import rollups, run_rollups
from outrider.control_plane.store.engine import utc
from outrider.control_plane.store.errors import StoreUnavailable
from outrider.control_plane.store.reads import Reads
from outrider.control_plane.store.scope import EVERYTHING, Scope, narrowed, over_targets


class AnalyticsReads(Reads):
    """The store's analytics reads, over its plain reads (a part of :class:`~outrider.control_plane.store.Store`)."""

    dialect: str

    def summary_facts(self, since: datetime, scope: Scope = EVERYTHING) -> dict[str, Any]:
        """What ``GET /v1/runs/summary`` needs about runs created at or after ``since``, aggregated in SQL.

        ``by_status``: status → {count, input_tokens, output_tokens, cost_nano_usd, priced, pr_count};
        ``durations``: durations of finished runs (for percentiles); ``latest_failure``: the failed run with
        the latest completion, or None.
        """
        r = tables.runs
        since = since.astimezone(UTC)
        window = sa.and_(r.c.created_at >= since, *scope.where(r.c.namespace, r.c.target))
        totals = (
            sa.select(
                r.c.status,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(r.c.input_tokens), 0),
                sa.func.coalesce(sa.func.sum(r.c.output_tokens), 0),
                sa.func.coalesce(sa.func.sum(r.c.cost_nano_usd), 0),
                sa.func.count(r.c.cost_nano_usd),
                sa.func.coalesce(sa.func.sum(r.c.pr_count), 0),
            )
            .where(window)
            .group_by(r.c.status)
        )
        durations = sa.select(r.c.duration_seconds).where(
            window, r.c.status.in_(list(projection.TERMINAL)), r.c.duration_seconds.is_not(None)
        )
        finished_at = sa.func.coalesce(r.c.completed_at, r.c.created_at)
        latest_id = (  # found in the covering status index; only the one row found is read
            sa.select(r.c.run_id)
            .where(window, r.c.status == "failed")
            .order_by(finished_at.desc(), r.c.run_id.desc())
            .limit(1)
            .scalar_subquery()
        )
        latest = sa.select(r.c.run_id, r.c.target, r.c.completed_at, r.c.error_summary).where(r.c.run_id == latest_id, window)
        try:
            with self.engine.connect() as conn:
                by_status = {
                    status: {
                        "count": int(count),
                        "input_tokens": int(tokens_in),
                        "output_tokens": int(tokens_out),
                        "cost_nano_usd": int(cost),
                        "priced": int(priced),
                        "pr_count": int(prs),
                    }
                    for status, count, tokens_in, tokens_out, cost, priced, prs in conn.execute(totals)
                }
                spans = [float(value) for (value,) in conn.execute(durations)]
                failure = conn.execute(latest).first()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        latest_failure = None
        if failure is not None:
            latest_failure = {
                "run_id": failure.run_id,
                "target": failure.target,
                "completed_at": utc(failure.completed_at),
                "error_summary": failure.error_summary,
            }
        return {"by_status": by_status, "durations": spans, "latest_failure": latest_failure}

    def finished_groups(self, since: datetime, column: str, scope: Scope = EVERYTHING) -> list[tuple[str | None, str, int]]:
        """(value of ``column``, status, count) over finished runs created from the hour holding ``since`` on, read
        from the run rollups: summed over targets when neither ``column`` nor the scope needs them; otherwise whole
        days from the daily rollup and the hours of the first, partial day from the hourly one. Either way the
        rows read grow with days × targets × error kinds, not with runs."""
        first_hour = rollups.hour_of(since.timestamp())
        parts: list[tuple[Any, str, int, int | None]]
        if column != "target" and over_targets(scope, None):
            parts = [(tables.rollup_runs_all, "hour", first_hour, None)]
        else:
            first_day = -(-first_hour // run_rollups.HOURS_PER_DAY)
            parts = [(tables.rollup_runs, "hour", first_hour, first_day * run_rollups.HOURS_PER_DAY),
                     (tables.rollup_runs_day, "day", first_day, None)]
        counts: collections.Counter[tuple[str | None, str]] = collections.Counter()
        for u, unit, low, high in parts:
            key = u.c[column]
            where = [u.c.axis == "created", u.c[unit] >= low, u.c.status.in_(list(projection.TERMINAL)), *narrowed(u, scope)]
            if high is not None:
                where.append(u.c[unit] < high)
            for value, status, count in self._read(sa.select(key, u.c.status, sa.func.sum(u.c["count"])).where(*where).group_by(key, u.c.status)):
                counts[(value or None, status)] += int(count)
        return [(value, status, count) for (value, status), count in counts.items() if count]

    def aggregates(self) -> dict[str, list[dict[str, Any]]]:
        """Everything ``/metrics`` reports from the store, read from the small ``agg_*`` tables only (finished
        runs and duration buckets are kept there by ``run_aggregates``; rows whose count fell to zero are left out)."""
        queries: dict[str, Any] = {
            "event_types": sa.select(tables.agg_event_types),
            "rejections": sa.select(tables.agg_rejections),
            "llm": sa.select(tables.agg_llm),
            "prs": sa.select(tables.agg_prs),
            "runs": sa.select(tables.agg_runs).where(tables.agg_runs.c.count > 0),
            "durations": sa.select(tables.agg_run_durations).where(tables.agg_run_durations.c.count > 0),
        }
        try:
            with self.engine.connect() as conn:
                return {name: _dicts(conn.execute(q)) for name, q in queries.items()}
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc

    def namespace_usage(self) -> dict[str, tuple[int, int]]:
        """namespace → (events, bytes) it keeps in the log, as far as the projection has counted (``quota.py``)."""
        u = tables.namespace_usage
        return {str(namespace): (int(count), int(size)) for namespace, count, size in self._read(sa.select(u.c.namespace, u.c.events, u.c.bytes))}

    def reported_targets(self) -> list[tuple[str, str]]:
        """(namespace, target) of every Target the operator reported (``target.status``), newest report first:
        the label values /metrics keeps however many made-up targets clients send."""
        e = tables.events
        query = (sa.select(e.c.namespace, e.c.target, sa.func.max(e.c.seq).label("last"))
                 .where(e.c.type == events.EventType.TARGET_STATUS.value, e.c.target.is_not(None))
                 .group_by(e.c.namespace, e.c.target).order_by(sa.desc("last")))
        return [(str(namespace), str(target)) for namespace, target, _ in self._read(query)]

    # --- insights (trends, models, graph, logs, retention) -----------------------------------------

    def _bucket(self, column: Any, start: datetime, size: int) -> Any:
        """SQL for the bucket index of ``column``: whole seconds since ``start`` divided by ``size`` (integers, exact)."""
        origin = int(start.timestamp())
        if self.dialect == "postgresql":
            seconds = sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)
        else:
            seconds = sa.cast(sa.func.strftime("%s", column), sa.Integer)
        return (seconds - origin) // size  # both operands integers and >= 0 (the WHERE clause): exact floor

    def trend_cells(self, start: datetime, size: int, target: str | None,
                    scope: Scope = EVERYTHING) -> tuple[dict[int, int], list[tuple[int, str, int, int, int, int, int]]]:
        """Runs bucketed from ``start`` in buckets of ``size`` seconds: started per bucket, and per (bucket, status)
        of the finished ones: (bucket, status, count, tokens, cost_nano_usd, priced, prs).

        Whole-hour buckets that start on an hour (every bucket of 1 h or more: they start at multiples of their
        size) are read from the hourly run rollup (summed over targets when nothing narrows to targets); shorter ones from the run records (:meth:`_trend_cells_of_runs`)."""
        origin = int(start.timestamp())
        if size % rollups.HOUR or origin % rollups.HOUR:
            return self._trend_cells_of_runs(start, size, target, scope)
        u = tables.rollup_runs_all if over_targets(scope, target) else tables.rollup_runs
        where = [u.c.hour >= origin // rollups.HOUR, *narrowed(u, scope, target)]
        started_rows = sa.select(u.c.hour, sa.func.sum(u.c["count"])).where(u.c.axis == "started", *where).group_by(u.c.hour)
        finished_rows = (
            sa.select(u.c.hour, u.c.status, sa.func.sum(u.c["count"]), sa.func.sum(u.c.tokens), sa.func.sum(u.c.cost_nano_usd),
                      sa.func.sum(u.c.priced), sa.func.sum(u.c.prs))
            .where(u.c.axis == "completed", u.c.status.in_(list(projection.TERMINAL)), *where).group_by(u.c.hour, u.c.status)
        )
        counts: dict[int, int] = collections.Counter()
        cells: dict[tuple[int, str], list[int]] = {}
        for hour, count in self._read(started_rows):
            counts[(int(hour) * rollups.HOUR - origin) // size] += int(count)
        for hour, status, count, tokens, cost, priced, prs in self._read(finished_rows):
            cell = cells.setdefault(((int(hour) * rollups.HOUR - origin) // size, status), [0, 0, 0, 0, 0])
            for index, value in enumerate((count, tokens, cost, priced, prs)):
                cell[index] += int(value or 0)
        return ({b: n for b, n in counts.items() if n},
                [(b, status, *cell) for (b, status), cell in sorted(cells.items()) if cell[0]])  # type: ignore[misc]

    def _trend_cells_of_runs(self, start: datetime, size: int, target: str | None,
                             scope: Scope = EVERYTHING) -> tuple[dict[int, int], list[tuple[int, str, int, int, int, int, int]]]:
        """:meth:`trend_cells` bucketed in SQL over the run records, for buckets shorter than an hour."""
        r = tables.runs
        start = start.astimezone(UTC)
        scope_ = ([] if target is None else [r.c.target == target]) + scope.where(r.c.namespace, r.c.target)
        started_bucket = self._bucket(r.c.started_at, start, size).label("b")
        started = sa.select(started_bucket, sa.func.count()).where(r.c.started_at >= start, *scope_).group_by(started_bucket)
        done_bucket = self._bucket(r.c.completed_at, start, size).label("b")
        finished = (
            sa.select(
                done_bucket, r.c.status, sa.func.count(), sa.func.coalesce(sa.func.sum(r.c.input_tokens + r.c.output_tokens), 0),
                sa.func.coalesce(sa.func.sum(r.c.cost_nano_usd), 0), sa.func.count(r.c.cost_nano_usd),
                sa.func.coalesce(sa.func.sum(r.c.pr_count), 0),
            )
            .where(r.c.completed_at >= start, r.c.status.in_(list(projection.TERMINAL)), *scope_)
            .group_by(done_bucket, r.c.status)
        )
        try:
            with self.engine.connect() as conn:
                counts = {int(b): int(n) for b, n in conn.execute(started)}
                cells = [
                    (int(b), status, int(n), int(tokens), int(cost), int(priced), int(prs))
                    for b, status, n, tokens, cost, priced, prs in conn.execute(finished)
                ]
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        return counts, cells

    def event_times(self, kind: str, since: datetime, target: str | None, scope: Scope = EVERYTHING) -> list[datetime]:
        """Times of the stored events of type ``kind`` at or after ``since`` (index on (type, time))."""
        e = tables.events
        query = sa.select(e.c.time).where(e.c.type == kind, e.c.time >= since.astimezone(UTC), *scope.where(e.c.namespace, e.c.target))
        if target is not None:
            query = query.where(e.c.target == target)
        return [utc(moment) for (moment,) in self._read(query)]  # type: ignore[misc]

    def model_facts(self, since: datetime, target: str | None, scope: Scope = EVERYTHING) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (provider, model), over the hourly rollups from the hour holding ``since`` on: ``calls``,
        ``errors``, ``input_tokens``, ``output_tokens``, ``cost_nano_usd``, ``priced`` (calls with a cost),
        ``latency_buckets`` (the latency histogram, ``rollups.latency_bucket`` indexes) and ``runs`` (status →
        distinct runs whose first call to the model falls in the window, from ``rollup_model_runs``). Reads rollup
        rows, never calls nor runs; summed over targets when nothing narrows to targets, so the cost grows with
        hours × models, not with the number of events or runs."""
        u, h, m = tables.rollup_llm, tables.rollup_llm_latency, tables.rollup_model_runs
        if over_targets(scope, target):
            u, h, m = tables.rollup_llm_all, tables.rollup_llm_latency_all, tables.rollup_model_runs_all
        first_hour = rollups.hour_of(since.timestamp())

        def where(table: Any) -> list[Any]:
            return [table.c.hour >= first_hour, *narrowed(table, scope, target)]

        key = (u.c.provider, u.c.model)
        totals = sa.select(*key, sa.func.sum(u.c.calls), sa.func.sum(u.c.errors), sa.func.sum(u.c.input_tokens),
                           sa.func.sum(u.c.output_tokens), sa.func.sum(u.c.cost_nano_usd), sa.func.sum(u.c.priced)
                           ).where(*where(u)).group_by(*key)
        latencies = sa.select(h.c.provider, h.c.model, h.c.bucket, sa.func.sum(h.c.count)).where(*where(h)).group_by(
            h.c.provider, h.c.model, h.c.bucket)
        runs = sa.select(m.c.provider, m.c.model, m.c.status, sa.func.sum(m.c["count"])).where(*where(m)).group_by(
            m.c.provider, m.c.model, m.c.status)
        facts: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            with self.engine.connect() as conn:
                for provider, model, calls, errors, tokens_in, tokens_out, cost, priced in conn.execute(totals):
                    facts[(provider, model)] = {
                        "calls": int(calls), "errors": int(errors or 0), "input_tokens": int(tokens_in or 0),
                        "output_tokens": int(tokens_out or 0), "cost_nano_usd": int(cost or 0), "priced": int(priced or 0),
                        "runs": {}, "latency_buckets": [0] * rollups.LATENCY_BUCKETS,
                    }
                for provider, model, bucket, count in conn.execute(latencies):
                    if (provider, model) in facts:
                        facts[(provider, model)]["latency_buckets"][int(bucket)] += int(count)
                for provider, model, status, count in conn.execute(runs):
                    if (provider, model) in facts and count:
                        facts[(provider, model)]["runs"][status or None] = int(count)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        return facts

    def graph_runs(self, since: datetime, target: str | None, limit: int, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        """Run records created at or after ``since`` (oldest first), at most ``limit``."""
        r = tables.runs
        query = sa.select(r.c.run_id, r.c.state, r.c.namespace).where(r.c.created_at >= since.astimezone(UTC),
                                                                      *scope.where(r.c.namespace, r.c.target))
        if target is not None:
            query = query.where(r.c.target == target)
        rows = self._read(query.order_by(r.c.created_at, r.c.run_id).limit(limit))
        return [projection.record(run_id, json.loads(state), namespace) for run_id, state, namespace in rows]


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    """The rows as dicts, zipped with the column names once: half the time of ``Row._asdict`` per row, which a
    scrape paid for ~800 aggregate rows at 200 targets (docs/performance.md, twelfth session)."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]
