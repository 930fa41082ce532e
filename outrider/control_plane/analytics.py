"""Summaries over run rows: the figures behind ``/v1/runs/summary`` and ``/v1/analytics/errors``.

Pure functions over the rows ``Store.runs_created_since`` returns (no I/O), so the arithmetic is
tested on its own. A window covers runs *created* in it. Every ratio is null when its denominator is
zero; nothing is ever guessed.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from outrider.control_plane import projection, schemas

FINISHED = set(projection.TERMINAL)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between closest ranks; null for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summary(rows: list[dict[str, Any]], window: str, since: datetime) -> dict[str, Any]:
    counts = {status.value: 0 for status in schemas.RunStatus}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    finished = sum(counts[status] for status in FINISHED)
    durations = [row["duration_seconds"] for row in rows if row["status"] in FINISHED and row["duration_seconds"] is not None]
    costs = [row["cost_nano_usd"] for row in rows if row["cost_nano_usd"] is not None]
    failures = [row for row in rows if row["status"] == "failed"]
    latest = max(failures, key=lambda row: (row["completed_at"] or row["created_at"], row["run_id"]), default=None)
    return {
        "window": window,
        "since": since,
        "counts": counts,
        "total": len(rows),
        "success_rate": ratio(counts["succeeded"], finished),
        "duration_p50_seconds": percentile(durations, 50),
        "duration_p95_seconds": percentile(durations, 95),
        "input_tokens": sum(int(row["input_tokens"]) for row in rows),
        "output_tokens": sum(int(row["output_tokens"]) for row in rows),
        "cost_usd": sum(costs) / projection.NANO if costs else None,
        "pr_count": sum(int(row["pr_count"]) for row in rows),
        "latest_failure": None
        if latest is None
        else {
            "run_id": latest["run_id"],
            "target": latest["target"],
            "completed_at": latest["completed_at"],
            "error_summary": latest["error_summary"],
        },
    }


#: Which run column each ``by=`` groups on.
GROUP_COLUMNS = {"target": "target", "error_type": "error_type", "stage": "error_stage"}


def errors(rows: list[dict[str, Any]], window: str, since: datetime, by: str) -> dict[str, Any]:
    column = GROUP_COLUMNS[by]
    finished_rows = [row for row in rows if row["status"] in FINISHED]
    failed_rows = [row for row in finished_rows if row["status"] == "failed"]
    failed_by: collections.Counter[str | None] = collections.Counter(row[column] for row in failed_rows)
    groups: list[dict[str, Any]] = []
    if by == "target":
        finished_by: collections.Counter[str | None] = collections.Counter(row[column] for row in finished_rows)
        for key, finished in finished_by.items():
            failed = failed_by.get(key, 0)
            groups.append({"key": key, "failed": failed, "finished": finished, "rate": ratio(failed, finished)})
    else:
        for key, failed in failed_by.items():
            groups.append({"key": key, "failed": failed, "finished": None, "rate": ratio(failed, len(failed_rows))})
    groups.sort(key=lambda group: (-group["failed"], group["key"] is None, group["key"] or ""))
    return {
        "window": window,
        "since": since,
        "by": by,
        "failed": len(failed_rows),
        "finished": len(finished_rows),
        "failure_rate": ratio(len(failed_rows), len(finished_rows)),
        "groups": groups,
    }
