"""Summaries over run rows: the figures behind ``/v1/runs/summary`` and ``/v1/analytics/errors``.

Pure functions over the aggregates ``Store.summary_facts`` and ``Store.finished_groups`` return (the
database does the counting and summing; no I/O here), so the arithmetic is tested on its own. A window covers runs *created* in it. Every ratio is null when its denominator is
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


def summary(facts: dict[str, Any], window: str, since: datetime) -> dict[str, Any]:
    """The ``RunSummary`` of ``Store.summary_facts``."""
    by_status = facts["by_status"]
    counts = {status.value: by_status.get(status.value, {}).get("count", 0) for status in schemas.RunStatus}
    finished = sum(counts[status] for status in FINISHED)
    priced = sum(group["priced"] for group in by_status.values())
    durations = facts["durations"]
    return {
        "window": window,
        "since": since,
        "counts": counts,
        "total": sum(group["count"] for group in by_status.values()),
        "success_rate": ratio(counts["succeeded"], finished),
        "duration_p50_seconds": percentile(durations, 50),
        "duration_p95_seconds": percentile(durations, 95),
        "input_tokens": sum(group["input_tokens"] for group in by_status.values()),
        "output_tokens": sum(group["output_tokens"] for group in by_status.values()),
        "cost_usd": sum(group["cost_nano_usd"] for group in by_status.values()) / projection.NANO if priced else None,
        "pr_count": sum(group["pr_count"] for group in by_status.values()),
        "latest_failure": facts["latest_failure"],
    }


#: Which run column each ``by=`` groups on.
GROUP_COLUMNS = {"target": "target", "error_type": "error_type", "stage": "error_stage"}


def errors(groups: list[tuple[str | None, str, int]], window: str, since: datetime, by: str) -> dict[str, Any]:
    """The ``ErrorAnalytics`` of ``Store.finished_groups`` rows (key, status, count) for ``by``."""
    finished_by: collections.Counter[str | None] = collections.Counter()
    failed_by: collections.Counter[str | None] = collections.Counter()
    for key, status, count in groups:
        finished_by[key] += count
        if status == "failed":
            failed_by[key] += count
    failed_total = sum(failed_by.values())
    finished_total = sum(finished_by.values())
    rows: list[dict[str, Any]] = []
    if by == "target":
        for key, finished in finished_by.items():
            failed = failed_by.get(key, 0)
            rows.append({"key": key, "failed": failed, "finished": finished, "rate": ratio(failed, finished)})
    else:
        for key, failed in failed_by.items():
            if failed:
                rows.append({"key": key, "failed": failed, "finished": None, "rate": ratio(failed, failed_total)})
    rows.sort(key=lambda group: (-group["failed"], group["key"] is None, group["key"] or ""))
    return {
        "window": window,
        "since": since,
        "by": by,
        "failed": failed_total,
        "finished": finished_total,
        "failure_rate": ratio(failed_total, finished_total),
        "groups": rows,
    }
