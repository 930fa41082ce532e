"""Prometheus metrics: totals read from the store at scrape time, plus a few in-process measurements.

Why a custom collector: the totals (events received, runs finished, tokens, cost, PRs) already live in
the store's aggregate tables, kept in the same transaction as the events. Reading them at scrape time
means a restart never resets a counter to a misleading zero and nothing has to be kept in sync. Each
app has its own ``CollectorRegistry`` (no global state; tests read ``registry.get_sample_value``).
Labels are bounded: type (known types, others as ``other``), reason, target, model, status,
direction — never a run id. See docs/metrics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, gc_collector, platform_collector, process_collector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from outrider.common import events
from outrider.control_plane import projection, run_aggregates, store

log = logging.getLogger(__name__)

#: Run duration buckets (seconds), as the store keeps them (``run_aggregates``).
DURATION_BUCKETS = run_aggregates.DURATION_BUCKETS
#: Every reason POST /v1/events counts a refusal under.
REJECTION_REASONS = (
    "invalid_event",
    "malformed_json",
    "payload_too_large",
    "batch_too_large",
    "unsupported_media_type",
    "unauthorized",
)
KNOWN_TYPES = tuple(t.value for t in events.EventType)


class StoreCollector(Collector):
    """Builds the store-derived metric families from the aggregate tables on every scrape."""

    def __init__(self, source: store.Store) -> None:
        self.store = source

    def describe(self) -> list[Metric]:
        return []  # families depend on the data; an empty describe keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("outrider_store_up", "1 when the store answered this scrape's queries, else 0.")
        try:
            aggregates = self.store.aggregates()
        except store.StoreUnavailable:
            log.warning("metrics scrape could not read the store", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._families(aggregates, run_aggregates.histograms(aggregates["durations"]))

    def _families(self, aggregates: dict[str, list[dict[str, Any]]], durations: list[dict[str, Any]]) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "outrider_events_received_total", "Events stored, by type (unknown types as 'other'); duplicates excluded.", labels=["type"]
        )
        by_type = dict.fromkeys(KNOWN_TYPES, 0) | {"other": 0}
        for row in aggregates["event_types"]:
            key = row["type"] if row["type"] in by_type and row["type"] != "other" else "other"
            by_type[key] += int(row["count"])
        for name, count in by_type.items():
            received.add_metric([name], count)
        yield received

        rejected = CounterMetricFamily(
            "outrider_events_rejected_total", "Events (or unreadable bodies) refused by POST /v1/events, by reason.", labels=["reason"]
        )
        by_reason = dict.fromkeys(REJECTION_REASONS, 0)
        for row in aggregates["rejections"]:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + int(row["count"])
        for reason, count in by_reason.items():
            rejected.add_metric([reason], count)
        yield rejected

        runs = CounterMetricFamily("outrider_runs_total", "Finished runs, by target and final status.", labels=["target", "status"])
        for row in aggregates["runs"]:
            runs.add_metric([row["target"] or "", row["status"]], int(row["count"]))
        yield runs

        histogram = HistogramMetricFamily(
            "outrider_run_duration_seconds", "Duration of finished runs (completed_at - started_at), by target.", labels=["target"]
        )
        for row in durations:
            buckets = [(_bound(b), count) for b, count in zip(DURATION_BUCKETS, row["buckets"], strict=True)]
            buckets.append(("+Inf", row["count"]))
            histogram.add_metric([row["target"] or ""], buckets, row["sum"])
        yield histogram

        tokens = CounterMetricFamily(
            "outrider_llm_tokens_total", "LLM tokens reported by runs, by target, model and direction (input/output).",
            labels=["target", "model", "direction"],
        )
        cost = CounterMetricFamily("outrider_llm_cost_usd_total", "LLM cost reported by runs in USD, by target and model.", labels=["target", "model"])
        for row in aggregates["llm"]:
            tokens.add_metric([row["target"], row["model"], "input"], int(row["input_tokens"]))
            tokens.add_metric([row["target"], row["model"], "output"], int(row["output_tokens"]))
            cost.add_metric([row["target"], row["model"]], int(row["cost_nano_usd"]) / projection.NANO)
        yield tokens
        yield cost

        prs = CounterMetricFamily("outrider_prs_created_total", "Pull requests created by runs (each PR number once per run), by target.", labels=["target"])
        for row in aggregates["prs"]:
            prs.add_metric([row["target"]], int(row["created"]))
        yield prs


def _bound(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


class Metrics:
    """The app's registry: the store collector, process/platform/GC collectors, and in-process measurements."""

    def __init__(self, source: store.Store) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(source))
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        self.ingest_seconds = Histogram(
            "outrider_ingest_duration_seconds",
            "Time POST /v1/events took from the first byte read to the committed answer (accepted requests only; "
            "in-process, resets on restart).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
