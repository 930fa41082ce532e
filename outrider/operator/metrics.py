"""The operator's Prometheus metrics, built at scrape time from its current view of the cluster.

A custom Collector reads the operator's in-memory view of Targets (the same numbers it writes to
``Target.status``) and the event sender's counters, so nothing is kept in sync by hand and a restart resets
nothing that lives in the cluster (breaker trips come from ``status.breaker.trips``). Labels: ``namespace`` and
``target`` (the Target's name) — bounded by the number of Targets, never a run id. Reference:
docs/concepts/health.md and docs/architecture.md (Operator section).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outrider.common import k8s


@dataclasses.dataclass(frozen=True)
class TargetView:
    namespace: str
    name: str
    health: str
    breaker_state: str
    trips: int
    consecutive_failures: int
    open_prs: int | None
    max_open_prs: int
    max_concurrent_runs: int
    active: int
    pending: int
    #: Creation time of the Run that has waited longest for admission; None when none waits.
    oldest_pending: dt.datetime | None = None
    #: Running Runs the watchdog holds Stalled now (no progress for the Target's progressTimeoutSeconds).
    stalled: int = 0


@dataclasses.dataclass
class View:
    """What the collector reads; the operator replaces entries as it reconciles."""

    targets: dict[tuple[str, str], TargetView] = dataclasses.field(default_factory=dict)
    autonomy_enabled: bool | None = None  # None until the ConfigMap was first read
    events_dropped: Callable[[], int] = lambda: 0
    events_buffered: Callable[[], int] = lambda: 0
    kube_events_dropped: Callable[[], int] = lambda: 0
    kube_events_queued: Callable[[], int] = lambda: 0


class OperatorCollector(Collector):
    def __init__(self, view: View) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "target"]
        health = GaugeMetricFamily("outrider_target_health", "1 for the Target's current health, 0 for the others.",
                                   labels=[*labels, "health"])
        breaker = GaugeMetricFamily("outrider_circuit_breaker_state", "1 for the breaker's current state, 0 for the others.",
                                    labels=[*labels, "state"])
        trips = CounterMetricFamily("outrider_circuit_breaker_trips", "Times the Target's breaker has opened (status.breaker.trips).",
                                    labels=labels)
        failures = GaugeMetricFamily("outrider_circuit_breaker_consecutive_failures", "Consecutive failed Runs counted by the breaker.",
                                     labels=labels)
        open_prs = GaugeMetricFamily("outrider_target_open_prs", "Open pull requests (absent when nobody reports them).", labels=labels)
        max_prs = GaugeMetricFamily("outrider_target_max_open_prs", "spec.maxOpenPRs.", labels=labels)
        max_runs = GaugeMetricFamily("outrider_target_max_concurrent_runs", "spec.maxConcurrentRuns.", labels=labels)
        active = GaugeMetricFamily("outrider_runs_active", "Admitted, unfinished Runs.", labels=labels)
        pending = GaugeMetricFamily("outrider_runs_pending", "Runs held for admission.", labels=labels)
        stalled = GaugeMetricFamily("outrider_runs_stalled", "Running Runs without progress for the watchdog's "
                                    "progressTimeoutSeconds (condition Stalled=True).", labels=labels)
        oldest = GaugeMetricFamily("outrider_runs_oldest_pending_timestamp_seconds",
                                   "Creation time (unix seconds) of the Run that has waited longest for admission; "
                                   "absent when none waits. time() minus it is how long the queue has starved.", labels=labels)
        for view in sorted(self.view.targets.values(), key=lambda v: (v.namespace, v.name)):
            key = [view.namespace, view.name]
            for value in k8s.HEALTHS:
                health.add_metric([*key, value], 1.0 if view.health == value else 0.0)
            for value in k8s.BREAKER_STATES:
                breaker.add_metric([*key, value], 1.0 if view.breaker_state == value else 0.0)
            trips.add_metric(key, view.trips)
            failures.add_metric(key, view.consecutive_failures)
            if view.open_prs is not None:
                open_prs.add_metric(key, view.open_prs)
            max_prs.add_metric(key, view.max_open_prs)
            max_runs.add_metric(key, view.max_concurrent_runs)
            active.add_metric(key, view.active)
            pending.add_metric(key, view.pending)
            stalled.add_metric(key, view.stalled)
            if view.oldest_pending is not None:
                oldest.add_metric(key, view.oldest_pending.timestamp())
        yield from (health, breaker, trips, failures, open_prs, max_prs, max_runs, active, pending, oldest, stalled)
        enabled = GaugeMetricFamily("outrider_autonomy_enabled", "1 while autonomy is enabled; 0 while paused, missing or invalid.")
        if self.view.autonomy_enabled is not None:
            enabled.add_metric([], 1.0 if self.view.autonomy_enabled else 0.0)
        yield enabled
        yield CounterMetricFamily("outrider_operator_events_dropped", "Events dropped because the buffer for the control plane was full.",
                                  value=self.view.events_dropped())
        yield GaugeMetricFamily("outrider_operator_events_buffered", "Events waiting to be delivered to the control plane.",
                                value=self.view.events_buffered())
        yield CounterMetricFamily("outrider_operator_kube_events_dropped",
                                  "Kubernetes Events dropped (oldest first) because their posting queue was full.",
                                  value=self.view.kube_events_dropped())
        yield GaugeMetricFamily("outrider_operator_kube_events_queued", "Kubernetes Events waiting to be posted.",
                                value=self.view.kube_events_queued())


def registry_for(view: View) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OperatorCollector(view))
    return registry
