"""Finished-run counts and run-duration histograms per target, kept as deltas in the writer's transaction.

Why: ``/metrics`` reports ``outrider_runs_total{target,status}`` and ``outrider_run_duration_seconds{target}``.
Counting them from the ``runs`` table on every scrape aggregated the whole table twice (~40 ms at 10^4 runs).
Instead the writer keeps two small tables, ``agg_runs`` and ``agg_run_durations``, in the same transaction
as the ``runs`` rows they summarise, so a scrape reads a few hundred small rows.

A run's status and duration can change when late events arrive (the projection is an order-independent
fold), so every change is a delta: the run's previous contribution is subtracted and its new one added.
Duration sums are kept in integer microseconds, so the deltas are exact in any order (a float sum would
drift). Rows whose count falls to zero stay in the tables and are skipped when read. The histogram keeps
one row per (target, bucket) with the bucket *index* into :data:`DURATION_BUCKETS`; changing the bounds
therefore needs a migration that rebuilds ``agg_run_durations`` (see migration 0005, which backfills both
tables from ``runs``).
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from outrider.control_plane import projection, tables

#: Run duration buckets (seconds): agent runs take from seconds to hours. Bucket i holds durations in
#: (bound[i-1], bound[i]]; bucket len(DURATION_BUCKETS) holds those above the last bound (+Inf).
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)
MICROS = 1_000_000
FINISHED = frozenset(projection.TERMINAL)

#: The query columns of a run this module reads (a ``projection.columns`` dict, or a ``runs`` row mapping).
Columns = Mapping[str, Any]
#: ``bump(cursor, table, key_columns, number_columns, rows)``: add each row's numbers (a row is its keys, then
#: its numbers) to the row with the same keys (``Store._bump``).
Bump = Callable[[Any, str, tuple[str, ...], tuple[str, ...], list[tuple[Any, ...]]], None]


def bucket(duration: float) -> int:
    """Index of the first bound ≥ ``duration`` (Prometheus' ``le``), len(bounds) above the last."""
    return bisect.bisect_left(DURATION_BUCKETS, duration)


def micros(duration: float) -> int:
    return round(duration * MICROS)


def _add(
    runs: collections.Counter[tuple[str, str, str]],
    durations: dict[tuple[str, str, int], list[int]],
    columns: Columns | None,
    sign: int,
) -> None:
    if columns is None or columns["status"] not in FINISHED:
        return
    namespace, target = columns.get("namespace") or "default", columns["target"] or ""
    runs[(namespace, target, columns["status"])] += sign
    duration = columns["duration_seconds"]
    if duration is not None:
        cell = durations.setdefault((namespace, target, bucket(duration)), [0, 0])
        cell[0] += sign
        cell[1] += sign * micros(duration)


def deltas(changes: Iterable[tuple[Columns | None, Columns]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``agg_runs`` and ``agg_run_durations`` rows to add for runs that changed from ``old`` (None when
    new) to ``new``; keys whose delta nets to zero are left out."""
    runs: collections.Counter[tuple[str, str, str]] = collections.Counter()
    durations: dict[tuple[str, str, int], list[int]] = {}
    for old, new in changes:
        _add(runs, durations, old, -1)
        _add(runs, durations, new, 1)
    run_rows = [{"namespace": ns, "target": t, "status": s, "count": n} for (ns, t, s), n in runs.items() if n]
    duration_rows = [
        {"namespace": ns, "target": t, "bucket": b, "count": n, "sum_micros": total}
        for (ns, t, b), (n, total) in durations.items()
        if n or total
    ]
    return run_rows, duration_rows


def apply(cursor: Any, changes: Iterable[tuple[Columns | None, Columns]], bump: Bump) -> None:
    """Apply the deltas of ``changes`` (old query columns or None, new query columns) in the writer's
    transaction (``cursor`` is its DBAPI cursor)."""
    run_rows, duration_rows = deltas(changes)
    if run_rows:
        bump(cursor, tables.agg_runs.name, ("namespace", "target", "status"), ("count",),
             [(r["namespace"], r["target"], r["status"], r["count"]) for r in run_rows])
    if duration_rows:
        bump(
            cursor, tables.agg_run_durations.name, ("namespace", "target", "bucket"), ("count", "sum_micros"),
            [(r["namespace"], r["target"], r["bucket"], r["count"], r["sum_micros"]) for r in duration_rows],
        )


def recount(rows: Iterable[Columns]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the tables hold for these ``runs`` rows counted from scratch (the migration's backfill, and tests)."""
    return deltas((None, row) for row in rows)


def histograms(rows: Iterable[Columns]) -> list[dict[str, Any]]:
    """Per (namespace, target), from ``agg_run_durations`` rows: ``count``, ``sum`` (seconds) and the cumulative
    count at each bound of :data:`DURATION_BUCKETS` (what a Prometheus histogram reports), in name order."""
    cells: dict[tuple[str, str], list[int]] = {}
    sums: collections.Counter[tuple[str, str]] = collections.Counter()
    for row in rows:
        key = (row.get("namespace") or "default", row["target"])
        counts = cells.setdefault(key, [0] * (len(DURATION_BUCKETS) + 1))
        counts[int(row["bucket"])] += int(row["count"])
        sums[key] += int(row["sum_micros"])
    out = []
    for key in sorted(cells):
        counts = cells[key]
        cumulative, running = [], 0
        for count in counts[:-1]:
            running += count
            cumulative.append(running)
        out.append({"namespace": key[0], "target": key[1], "count": running + counts[-1], "sum": sums[key] / MICROS,
                    "buckets": cumulative})
    return out
