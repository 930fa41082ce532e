"""Budgets on ``/metrics``: spend and limits per scope and rolling window, computed at scrape time.

- ``outrider_budget_spent_usd{scope,window}`` — USD of priced LLM calls in the rolling window (scope "global" or
  a Target; window "1h" or "24h"), from the store, exactly as ``GET /v1/budgets`` reports it.
- ``outrider_budget_limit_usd{scope,window}`` — the limit the operator last reported for that scope and window;
  no series where there is none (absent, not 0: 0 would be a real limit).

A custom collector (nothing kept in memory): a restart never shows figures the store does not hold. Scopes are
bounded: the Targets the operator reported, then the biggest spenders of the last 24 h, ``metrics_max_targets``
in all, the rest summed under ``scope="other"``; never a run id. A store that cannot be read
exports no budget series (``outrider_store_up`` says why).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outrider.control_plane import budgets, store


class BudgetCollector(Collector):
    def __init__(self, source: store.Store) -> None:
        self.store = source

    def describe(self) -> list[Metric]:
        return []  # data-dependent families; an empty describe keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        try:
            with self.store.reading() as conn:
                scopes = budgets.spend_and_limits(conn, max_scopes=self.store.settings.metrics_max_targets)
        except store.StoreUnavailable:  # store.reading() turns any database error into it
            return
        spent = GaugeMetricFamily("outrider_budget_spent_usd", "USD spent on priced LLM calls in the rolling window.",
                                  labels=["scope", "window"])
        limit = GaugeMetricFamily("outrider_budget_limit_usd", "The budget the operator reported for the scope and "
                                  "window (absent: none).", labels=["scope", "window"])
        for scope, windows in scopes:
            for window, (spent_nano, limit_usd) in windows.items():
                spent.add_metric([scope, window], spent_nano / budgets.NANO)
                if limit_usd is not None:
                    limit.add_metric([scope, window], limit_usd)
        yield spent
        yield limit
