"""Prometheus metrics: totals read from the store at scrape time, plus a few in-process measurements.

Why a custom collector: the totals (events received, runs finished, tokens, cost, PRs) already live in
the store's aggregate tables, kept in the same transaction as the events. Reading them at scrape time
means a restart never resets a counter to a misleading zero and nothing has to be kept in sync. Each
app has its own ``CollectorRegistry`` (no global state; tests read ``registry.get_sample_value``).
Labels are bounded: type (known types, others as ``other``), reason, target, model, status,
direction — never a run id. See docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from outrider.common import events
from outrider.control_plane import cardinality, projection, run_aggregates, status, store

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
    "too_many_requests",
    "quota_exceeded",
)
KNOWN_TYPES = tuple(t.value for t in events.EventType)


#: One sample: (sample name, labels as (name, value) pairs in label-name order, value).
Sample = tuple[str, tuple[tuple[str, str], ...], float]


@dataclasses.dataclass
class Family:
    """A store-derived metric family, kept as plain tuples until it is either handed to the registry
    (:meth:`metric`: ``registry.get_sample_value`` and generic exposition) or written out as text (:meth:`text`)."""

    name: str  #: as exposed (counters end in ``_total``)
    type: str
    documentation: str
    samples: list[Sample] = dataclasses.field(default_factory=list)

    def metric(self) -> Metric:
        found = Metric(self.name.removesuffix("_total") if self.type == "counter" else self.name, self.documentation, self.type)
        for name, labels, value in self.samples:
            found.add_sample(name, dict(labels), value)
        return found

    def text(self) -> str:
        """The family in the text format 0.0.4, exactly as ``prometheus_client.generate_latest`` writes it (a test
        compares the two), without building a ``Sample`` and re-validating names per line: the histogram alone has
        ~17 lines per target. Rendered once per scrape each: a first label pair, the pairs after it (a histogram's
        17 lines of one target share them), and an integer value (counts repeat)."""
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out = [f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.type}\n"]
        heads: dict[tuple[str, str], str] = {}
        tails: dict[tuple[tuple[str, str], ...], str] = {}
        integers: dict[int, str] = {}  # floats are not kept: -0.0 == 0.0, but they are written differently
        for name, labels, value in self.samples:
            if type(value) is int:
                number = integers.get(value)
                if number is None:
                    number = integers[value] = floatToGoString(value)
            else:
                number = floatToGoString(value)
            if not labels:
                out.append(f"{name} {number}\n")
                continue
            first, rest = labels[0], labels[1:]
            head = heads.get(first)
            if head is None:
                head = heads[first] = f'{first[0]}="{_escape(first[1])}"'
            tail = tails.get(rest)
            if tail is None:
                tail = tails[rest] = "".join(f',{key}="{_escape(text)}"' for key, text in rest)
            out.append(f"{name}{{{head}{tail}}} {number}\n")
        return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class FamilyCollector(Collector):
    """A collector of :class:`Family` s read from the store at scrape time: ``/metrics`` writes them as text
    directly (:meth:`Metrics.exposition`); :meth:`collect` serves the registry's generic readers."""

    def __init__(self, source: store.Store) -> None:
        self.store = source

    def describe(self) -> list[Metric]:
        return []  # families depend on the data; an empty describe keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        for family in self.families():
            yield family.metric()

    def families(self) -> list[Family]:
        raise NotImplementedError


class StoreCollector(FamilyCollector):
    """Builds the store-derived metric families from the aggregate tables on every scrape."""

    def families(self) -> list[Family]:
        up = Family("outrider_store_up", "gauge", "1 when the store answered this scrape's queries, else 0.")
        try:
            config = self.store.settings
            with self.store.reading() as conn:
                deleted = status.deleted_targets(conn)
            aggregates = cardinality.bound(self.store.aggregates(), self.store.reported_targets(), deleted=deleted,
                                           max_targets=config.metrics_max_targets, max_models=config.metrics_max_models)
        except store.StoreUnavailable:
            log.warning("metrics scrape could not read the store", exc_info=True)
            up.samples.append(("outrider_store_up", (), 0))
            return [up]
        up.samples.append(("outrider_store_up", (), 1))
        return [up, *self._projection(), *self._storage(), *self._families(aggregates, run_aggregates.histograms(aggregates["durations"]))]

    def _storage(self) -> list[Family]:
        """What each namespace keeps in the log, and its quota: the busiest ``metrics_max_targets`` namespaces by
        name, the rest summed under ``other``."""
        try:
            usage = self.store.namespace_usage()
        except store.StoreUnavailable:
            log.warning("metrics scrape could not read the namespaces' storage", exc_info=True)
            return []
        kept = sorted(usage, key=lambda name: (-usage[name][1], name))[: self.store.settings.metrics_max_targets]
        bounded: dict[str, list[int]] = {}
        for namespace, (count, size) in usage.items():
            cell = bounded.setdefault(namespace if namespace in kept else cardinality.OTHER, [0, 0])
            cell[0] += count
            cell[1] += size
        stored_bytes = Family("outrider_namespace_stored_bytes", "gauge",
                              "Bytes of events each namespace keeps in the log (their JSON), as far as the projection has counted.")
        stored_events = Family("outrider_namespace_stored_events", "gauge", "Events each namespace keeps in the log.")
        for namespace, (count, size) in sorted(bounded.items()):
            stored_bytes.samples.append((stored_bytes.name, (("namespace", namespace),), size))
            stored_events.samples.append((stored_events.name, (("namespace", namespace),), count))
        families = [stored_bytes, stored_events]
        if self.store.settings.namespace_quota_bytes is not None:
            limit = Family("outrider_namespace_quota_bytes", "gauge",
                           "The storage quota of every namespace (OUTRIDER_NAMESPACE_QUOTA_BYTES); absent when there is none.")
            limit.samples.append((limit.name, (), self.store.settings.namespace_quota_bytes))
            families.append(limit)
        return families

    def _projection(self) -> list[Family]:
        """How far the projection lags the event log, and whether any projector works for this database."""
        try:
            status = self.store.projection_status()
        except store.StoreUnavailable:
            log.warning("metrics scrape could not read the projection's progress", exc_info=True)
            return []
        families = []
        for name, kind, documentation, value in (
            ("outrider_log_position", "gauge", "The event log's last position (seq).", status["head"]),
            ("outrider_projection_position", "gauge", "The log position the projection has reached (its checkpoint).", status["position"]),
            ("outrider_projection_lag_events", "gauge",
             "Log events not yet projected into run records, rollups and these counters (counted up to 10^6).", status["lag_events"]),
            ("outrider_projection_lag_seconds", "gauge",
             "How long the oldest unprojected event has waited since it was received; 0 when none waits.", status["lag_seconds"]),
            ("outrider_projector_up", "gauge",
             "1 when a projector holds a fresh lease for this database (any replica), else 0.",
             0 if self.store.projector_stopped(status) else 1),
        ):
            family = Family(name, kind, documentation)
            family.samples.append((name, (), value))
            families.append(family)
        return families

    def _families(self, aggregates: dict[str, list[dict[str, Any]]], durations: list[dict[str, Any]]) -> list[Family]:
        # Labels are listed in name order: the order the text format writes them in.
        received = Family(
            "outrider_events_received_total", "counter", "Events stored, by type (unknown types as 'other'); duplicates excluded."
        )
        by_type = dict.fromkeys(KNOWN_TYPES, 0) | {"other": 0}
        for row in aggregates["event_types"]:
            key = row["type"] if row["type"] in by_type and row["type"] != "other" else "other"
            by_type[key] += int(row["count"])
        received.samples.extend((received.name, (("type", name),), count) for name, count in by_type.items())

        rejected = Family(
            "outrider_events_rejected_total", "counter", "Events (or unreadable bodies) refused by POST /v1/events, by reason."
        )
        by_reason = dict.fromkeys(REJECTION_REASONS, 0)
        for row in aggregates["rejections"]:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + int(row["count"])
        rejected.samples.extend((rejected.name, (("reason", reason),), count) for reason, count in by_reason.items())

        runs = Family("outrider_runs_total", "counter", "Finished runs, by namespace, target and final status.")
        runs.samples.extend(
            (runs.name, (_ns(row), ("status", row["status"]), ("target", row["target"] or "")), int(row["count"]))
            for row in aggregates["runs"]
        )

        histogram = Family(
            "outrider_run_duration_seconds", "histogram",
            "Duration of finished runs (completed_at - started_at), by namespace and target."
        )
        bucket, count, total = (histogram.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        for row in durations:
            namespace, target = _ns(row), ("target", row["target"] or "")
            histogram.samples.extend((bucket, (le, namespace, target), n) for le, n in zip(_LE, row["buckets"], strict=True))
            histogram.samples.append((bucket, (("le", "+Inf"), namespace, target), row["count"]))
            histogram.samples.append((count, (namespace, target), row["count"]))
            histogram.samples.append((total, (namespace, target), row["sum"]))

        tokens = Family(
            "outrider_llm_tokens_total", "counter",
            "LLM tokens reported by runs, by namespace, target, model and direction (input/output)."
        )
        cost = Family("outrider_llm_cost_usd_total", "counter", "LLM cost reported by runs in USD, by namespace, target and model.")
        for row in aggregates["llm"]:
            model, namespace, target = ("model", row["model"]), _ns(row), ("target", row["target"])
            tokens.samples.append((tokens.name, (("direction", "input"), model, namespace, target), int(row["input_tokens"])))
            tokens.samples.append((tokens.name, (("direction", "output"), model, namespace, target), int(row["output_tokens"])))
            cost.samples.append((cost.name, (model, namespace, target), int(row["cost_nano_usd"]) / projection.NANO))

        prs = Family(
            "outrider_prs_created_total", "counter",
            "Pull requests created by runs (each PR number once per run), by namespace and target."
        )
        prs.samples.extend((prs.name, (_ns(row), ("target", row["target"])), int(row["created"])) for row in aggregates["prs"])
        return [received, rejected, runs, histogram, tokens, cost, prs]


def _ns(row: dict[str, Any]) -> tuple[str, str]:
    return ("namespace", row.get("namespace") or "default")


def _bound(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


#: The ``le`` label of each finite bucket.
_LE = tuple(("le", _bound(bound)) for bound in DURATION_BUCKETS)


class Registry(CollectorRegistry):
    """A ``CollectorRegistry`` that remembers its collectors in registration order, for :meth:`Metrics.exposition`."""

    def __init__(self) -> None:
        super().__init__()
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self.collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self.collectors.remove(collector)


class _One:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        return self.collector.collect()


class Metrics:
    """The app's registry: the store collector, process/platform/GC collectors, and in-process measurements."""

    def __init__(self, source: store.Store) -> None:
        self.registry = Registry()
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

    def exposition(self) -> bytes:
        """What ``/metrics`` serves: ``generate_latest(self.registry)``, byte for byte, but the families read from
        the store (~5,000 samples at 200 targets) are written directly as text (:meth:`Family.text`) — the generic
        writer spent ~20 ms per scrape on them."""
        parts: list[bytes] = []
        for collector in self.registry.collectors:
            if isinstance(collector, FamilyCollector):
                parts.append("".join(family.text() for family in collector.families()).encode())
            else:
                parts.append(generate_latest(_One(collector)))
        return b"".join(parts)
