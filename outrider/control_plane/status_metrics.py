"""The system status on ``/metrics``: the same :func:`outrider.control_plane.status.compute` the console and CLI show.

Built at scrape time from the store (a custom collector, nothing kept in memory), so a restart never shows a
state that is not in the data. Names do not clash with the operator's own gauges (``outrider_autonomy_enabled``,
``outrider_target_*``, exported by the operator process):

- ``outrider_system_state{state}`` — 1 for the current state (healthy, idle, blocked, error), 0 for the others.
- ``outrider_system_blocked{cause}`` — 1 for each cause holding work back (max_open_prs, circuit_breaker,
  autonomy_paused, budget), else 0.
- ``outrider_operator_heartbeat_age_seconds`` — seconds since the last operator heartbeat arrived (absent when
  none ever did, or the store cannot be read).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outrider.control_plane import schemas, status, store


class StatusCollector(Collector):
    """Computes the system status on every scrape."""

    def __init__(self, source: store.Store) -> None:
        self.store = source

    def describe(self) -> list[Metric]:
        return []  # data-dependent families; an empty describe keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        inputs = status.load(self.store, recent=False)  # the gauges need no recent-activity list
        if inputs.store_error is None and not self.store.writer_alive:
            inputs = status.Inputs(store_error="the store writer is not running")
        current = status.compute(inputs)
        state = GaugeMetricFamily("outrider_system_state", "1 for the system's current state, 0 for the others.",
                                  labels=["state"])
        for value in schemas.SystemState:
            state.add_metric([value.value], 1.0 if current.state == value else 0.0)
        yield state
        blocked = GaugeMetricFamily("outrider_system_blocked", "1 for each cause that blocks work, else 0.",
                                    labels=["cause"])
        for cause in schemas.BlockedBy:
            blocked.add_metric([cause.value], 1.0 if cause in current.blocked_by else 0.0)
        yield blocked
        if current.operator.age_seconds is not None:
            yield GaugeMetricFamily(
                "outrider_operator_heartbeat_age_seconds",
                "Seconds since the operator's last heartbeat reached the control plane.",
                value=current.operator.age_seconds,
            )
