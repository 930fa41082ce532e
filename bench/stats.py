"""Small, dependency-free statistics for benchmark samples: percentiles and a median with its spread.

Percentiles use linear interpolation between closest ranks (numpy's default), so p99 of 50 samples is
well defined and reproducible. Every function returns None for an empty sample rather than a guess.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) of ``values`` by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Median and spread of one figure over repeats: ``{median, min, max, spread_pct, values, n}``.

    ``spread_pct`` is (max - min) / median in percent: how far apart the repeats landed. Missing
    repeats (None) are dropped; with none left every field is None.
    """
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "values": [], "n": 0}
    median = statistics.median(present)
    spread = (max(present) - min(present)) / median * 100.0 if median else None
    return {
        "median": median,
        "min": min(present),
        "max": max(present),
        "spread_pct": spread,
        "values": present,
        "n": len(present),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
