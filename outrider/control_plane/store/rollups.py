"""Rollups of LLM calls the projector keeps, so analytics and budgets cost the same at 10^3 or 10^7 events.

- ``rollup_llm``: per hour × namespace × target × provider × model: calls, errors, tokens, cost, priced calls,
  latency samples; ``rollup_llm_latency`` the same key × a latency bucket: a fixed-bucket histogram.
- ``rollup_spend``: per minute × namespace × target: priced cost. Budgets sum it over their rolling windows.
- ``run_models``: one row per (run, provider, model) ever used; ``rollup_model_runs`` counts them per first
  hour × namespace × target × provider × model × the run's status now (``model_run_deltas``), so "how did
  the runs that used this model end" reads neither calls nor runs.

Latency percentiles come from the histogram: bucket ``i`` holds latencies in (B·R^(i-1), B·R^i] with
B = :data:`LATENCY_BASE` and R = :data:`LATENCY_RATIO`, and an estimate interpolates inside the bucket that
holds the wanted rank. So an estimate lies in the same bucket as the exact sample percentile: it is within
25 % of it (R = 1.25) for latencies from 10 ms to ~20 min; bucket 0 holds everything ≤ 10 ms, the last
everything above. Spend is exact per minute; a rolling window counts every minute it overlaps, so the
oldest minute may be counted whole (an over-count of at most one minute of spend, never an under-count).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LATENCY_BASE = 0.01
LATENCY_RATIO = 1.25
LATENCY_BUCKETS = 48  # the last bound: 0.01 · 1.25^47 ≈ 1,900 s
HOUR = 3600
MINUTE = 60
_LOG_RATIO = math.log(LATENCY_RATIO)


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency (see the module docstring)."""
    if not seconds > LATENCY_BASE:  # also NaN and negatives
        return 0
    index = math.ceil(math.log(seconds / LATENCY_BASE) / _LOG_RATIO - 1e-12)
    return min(index, LATENCY_BUCKETS - 1)


def bucket_bounds(index: int) -> tuple[float, float]:
    """(lower, upper] latency bounds of a bucket, in seconds."""
    if index == 0:
        return 0.0, LATENCY_BASE
    upper = LATENCY_BASE * LATENCY_RATIO**index
    return upper / LATENCY_RATIO, upper


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-th percentile (0–100) estimated from bucket counts; null for no samples.

    The rule of ``analytics.percentile`` (linear between the closest ranks), with each ranked sample estimated
    inside its bucket (the j-th of c samples of a bucket at (j + ½)/c of its width): each estimate lies in its
    sample's bucket, so the result is within one bucket ratio (25 %) of the exact percentile."""
    total = sum(counts)
    if not total:
        return None
    rank = (total - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    low_value, high_value = _ranked(counts, low), _ranked(counts, high)
    return low_value + (high_value - low_value) * (rank - low)


def _ranked(counts: Sequence[int], index: int) -> float:
    """The estimate of the ``index``-th smallest sample (0-based)."""
    seen = 0
    for bucket, count in enumerate(counts):
        if index < seen + count:
            lower, upper = bucket_bounds(bucket)
            if bucket == LATENCY_BUCKETS - 1:
                return lower  # the open-ended last bucket: its lower bound, never a made-up upper one
            return lower + (upper - lower) * ((index - seen + 0.5) / count)
        seen += count
    raise IndexError(index)


def hour_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // HOUR)


def minute_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // MINUTE)


def over_targets(cells: dict[tuple[Any, ...], Any]) -> dict[tuple[Any, ...], Any]:
    """Rollup cells keyed (hour, namespace, target, provider, model[, bucket]) summed over the target: the cells of
    the ``*_all`` rollups. Values are counts or lists of counts."""
    summed: dict[tuple[Any, ...], Any] = {}
    for (hour, namespace, _target, *rest), value in cells.items():
        key = (hour, namespace, *rest)
        if isinstance(value, list):
            cell = summed.setdefault(key, [0] * len(value))
            for index, number in enumerate(value):
                cell[index] += number
        else:
            summed[key] = summed.get(key, 0) + value
    return summed


#: A run's models as ``run_models`` has them: (provider, model) → (target of the first call, its hour).
Models = dict[tuple[str, str], tuple[str | None, int]]


def model_run_deltas(changes: Iterable[tuple[tuple[str, str], str | None, str]], stored: Mapping[tuple[str, str], Models],
                     used: Mapping[tuple[str, str], Models]) -> dict[tuple[Any, ...], int]:
    """``rollup_model_runs`` deltas keyed (hour, namespace, target, provider, model, status) for runs that went from
    status ``old`` (None: no record yet) to ``new``: each model already ``stored`` for the run moves from the old
    status to the new one, each model the batch ``used`` first counts under the new one. Zero deltas are left out."""
    cells: collections.Counter[tuple[Any, ...]] = collections.Counter()
    for (namespace, run_id), old, new in changes:
        known = stored.get((namespace, run_id), {})
        for (provider, model), (target, hour) in known.items():
            if old != new:
                if old is not None:
                    cells[(hour, namespace, target or "", provider, model, old)] -= 1
                cells[(hour, namespace, target or "", provider, model, new)] += 1
        for (provider, model), (target, hour) in used.get((namespace, run_id), {}).items():
            if (provider, model) not in known:
                cells[(hour, namespace, target or "", provider, model, new)] += 1
    return {key: count for key, count in cells.items() if count}
