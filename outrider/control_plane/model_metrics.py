"""Each model's health on ``/metrics``, for the ``OutriderModelDegradation`` alert: calls, error ratio and p95
latency in a recent window and in the baseline before it, computed at scrape time from the hourly rollups.

- ``outrider_model_calls{model,window}`` — LLM calls whose event time is in the window;
- ``outrider_model_error_ratio{model,window}`` — the share of them that reported an error (absent: no calls);
- ``outrider_model_latency_p95_seconds{model,window}`` — their p95 latency, estimated from the rollups' fixed
  buckets (within 25 % of the exact figure, ``store.rollups``; absent: no call reported a latency).

Windows are clock hours, as the rollups are: ``recent`` is the current hour and the one before (60–120 minutes
of calls), ``baseline`` the 24 hours before those. An alert compares a model with its own baseline, so a model
that is always slow does not page; one that became slow does.

Bounded like every label here: the ``metrics_max_models`` busiest models (by calls over both windows) keep their
own series, the rest are summed under ``model="other"`` (its p95 from their summed histogram). Nothing is kept
in memory: a restart never shows a figure the store does not hold; a store that cannot be read exports nothing
here (``outrider_store_up`` says why).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outrider.control_plane import cardinality, store
from outrider.control_plane.store import model_rollups, rollups

RECENT_HOURS = 2
BASELINE_HOURS = 24


def _window(hour: int, now_hour: int) -> str | None:
    if hour > now_hour - RECENT_HOURS:
        return "recent"
    if hour > now_hour - RECENT_HOURS - BASELINE_HOURS:
        return "baseline"
    return None


class ModelCollector(Collector):
    def __init__(self, source: store.Store) -> None:
        self.store = source

    def describe(self) -> list[Metric]:
        return []  # data-dependent families; an empty describe keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        now_hour = rollups.hour_of(time.time())
        first = now_hour - RECENT_HOURS - BASELINE_HOURS + 1
        try:
            call_rows, latency_rows = model_rollups.hours_since(self.store, first)
        except store.StoreUnavailable:
            return
        busy: collections.Counter[str] = collections.Counter()
        for model, _, count, _ in call_rows:
            busy[model] += int(count)
        kept = {model for model, _ in sorted(busy.items(), key=lambda item: (-item[1], item[0]))[: self.store.settings.metrics_max_models]}

        def label(model: str) -> str:
            return model if model in kept else cardinality.OTHER

        per_window: dict[tuple[str, str], list[int]] = {}
        for model, hour, count, errors in call_rows:
            window = _window(int(hour), now_hour)
            if window is not None:
                cell = per_window.setdefault((label(model), window), [0, 0])
                cell[0] += int(count)
                cell[1] += int(errors)
        buckets: dict[tuple[str, str], list[int]] = {}
        for model, hour, bucket, count in latency_rows:
            window = _window(int(hour), now_hour)
            if window is not None:
                counts = buckets.setdefault((label(model), window), [0] * rollups.LATENCY_BUCKETS)
                counts[min(int(bucket), rollups.LATENCY_BUCKETS - 1)] += int(count)

        labels = ["model", "window"]
        call_family = GaugeMetricFamily("outrider_model_calls", "LLM calls of the model whose event time is in the window "
                                        "(recent: this clock hour and the one before; baseline: the 24 before).", labels=labels)
        errors_family = GaugeMetricFamily("outrider_model_error_ratio", "Share of the model's calls in the window that "
                                          "reported an error (absent: no calls).", labels=labels)
        p95_family = GaugeMetricFamily("outrider_model_latency_p95_seconds", "p95 latency of the model's calls in the "
                                       "window, from the rollups' histogram (within 25 %; absent: no latencies).", labels=labels)
        for (model, window), (count, errors) in sorted(per_window.items()):
            call_family.add_metric([model, window], count)
            if count:
                errors_family.add_metric([model, window], errors / count)
        for (model, window), counts in sorted(buckets.items()):
            p95 = rollups.percentile(counts, 95)
            if p95 is not None:
                p95_family.add_metric([model, window], p95)
        yield call_family
        yield errors_family
        yield p95_family
