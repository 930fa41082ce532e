"""Runs rolled up per hour, so trends and error analytics cost the same at 10^4 or 10^6 runs.

``rollup_runs`` holds, per hour × axis × namespace × target × status × error type × error stage, the number of
runs and their tokens, cost (priced runs) and PRs. A run counts on three axes:

- ``created``: in the hour of its ``created_at``, under its current status, error type and stage (error
  analytics: finished runs created in the window, by target, error type or stage);
- ``started``: in the hour of its ``started_at``, when it has one (trends: runs started per bucket);
- ``completed``: in the hour of its ``completed_at``, when it finished (trends: runs finished per bucket and
  status, tokens, cost, PRs).

A run's figures change as its events arrive (late, out of order), so the projector applies every change as a
delta, like ``run_aggregates``: the run's previous contribution is subtracted, its new one added, in the same
transaction. Rows whose count fell to zero stay and are skipped when read.

Two more levels take the same deltas, so a 30-day question reads rows that do not grow with the runs: with
10^5 runs over 30 days and 200 targets most (hour, target) cells hold one run. ``rollup_runs_all`` sums over
targets (trends and errors when no target narrows them); ``rollup_runs_day`` keys by day (unix time // 86400)
instead of hour, and a window reads its whole days there and only the hours of its first, partial day from
``rollup_runs``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from outrider.control_plane import projection
from outrider.control_plane.store import rollups

KEY = ("hour", "axis", "namespace", "target", "status", "error_type", "error_stage")
ALL_KEY = tuple(name for name in KEY if name != "target")
DAY_KEY = ("day", *KEY[1:])
HOURS_PER_DAY = 24
NUMBERS = ("count", "tokens", "cost_nano_usd", "priced", "prs")
FINISHED = frozenset(projection.TERMINAL)

Row = tuple[Any, ...]


def _hour(moment: datetime) -> int:
    return rollups.hour_of(moment.timestamp())


def contributions(columns: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], tuple[int, ...]]]:
    """(key, numbers) of one run's query columns (a ``projection.columns`` dict)."""
    namespace, target, status = columns.get("namespace") or "default", columns["target"] or "", columns["status"]
    cost = columns["cost_nano_usd"]
    tokens = int(columns["input_tokens"]) + int(columns["output_tokens"])
    figures = (1, tokens, int(cost or 0), 0 if cost is None else 1, int(columns["pr_count"]))
    found: list[tuple[tuple[Any, ...], tuple[int, ...]]] = [((_hour(columns["created_at"]), "created", namespace, target, status, columns["error_type"] or "",
               columns["error_stage"] or ""), figures)]
    if columns["started_at"] is not None:
        found.append(((_hour(columns["started_at"]), "started", namespace, target, "", "", ""), (1, 0, 0, 0, 0)))
    if status in FINISHED and columns["completed_at"] is not None:
        found.append(((_hour(columns["completed_at"]), "completed", namespace, target, status, "", ""), figures))
    return found


def deltas(changes: Iterable[tuple[Mapping[str, Any] | None, Mapping[str, Any]]]) -> list[Row]:
    """The rows to add to ``rollup_runs`` for runs that changed from ``old`` (None when new) to ``new``; keys
    whose delta nets to zero are left out."""
    cells: dict[tuple[Any, ...], list[int]] = collections.defaultdict(lambda: [0] * len(NUMBERS))
    for old, new in changes:
        for columns, sign in ((old, -1), (new, 1)):
            if columns is None:
                continue
            for key, figures in contributions(columns):
                cell = cells[key]
                for index, value in enumerate(figures):
                    cell[index] += sign * value
    return [(*key, *cell) for key, cell in cells.items() if any(cell)]


def _regroup(rows: Iterable[Row], key: Callable[[Row], tuple[Any, ...]]) -> list[Row]:
    """``rows`` (key then :data:`NUMBERS`) summed under ``key`` of each row; sums that net to zero are left out."""
    width = len(NUMBERS)
    cells: dict[tuple[Any, ...], list[int]] = collections.defaultdict(lambda: [0] * width)
    for row in rows:
        cell = cells[key(row)]
        for index, value in enumerate(row[-width:]):
            cell[index] += value
    return [(*key_, *cell) for key_, cell in cells.items() if any(cell)]


def over_targets(rows: Iterable[Row]) -> list[Row]:
    """:func:`deltas` rows as ``rollup_runs_all`` rows (:data:`ALL_KEY`)."""
    return _regroup(rows, lambda row: (*row[:3], *row[4:len(KEY)]))


def by_day(rows: Iterable[Row]) -> list[Row]:
    """:func:`deltas` rows as ``rollup_runs_day`` rows (:data:`DAY_KEY`)."""
    return _regroup(rows, lambda row: (row[0] // HOURS_PER_DAY, *row[1:len(KEY)]))
