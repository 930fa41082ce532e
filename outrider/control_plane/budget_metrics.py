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

from outrider.control_plane import budgets, metrics, store


class BudgetCollector(metrics.FamilyCollector):
    def families(self) -> list[metrics.Family]:
        """The two gauges as plain families: ``/metrics`` writes them as text directly (``Metrics.exposition``)."""
        try:
            with self.store.reading() as conn:
                scopes = budgets.spend_and_limits(conn, max_scopes=self.store.settings.metrics_max_targets)
        except store.StoreUnavailable:  # store.reading() turns any database error into it
            return []
        spent = metrics.Family("outrider_budget_spent_usd", "gauge", "USD spent on priced LLM calls in the rolling window.")
        limit = metrics.Family("outrider_budget_limit_usd", "gauge",
                               "The budget the operator reported for the scope and window (absent: none).")
        for scope, windows in scopes:
            for window, (spent_nano, limit_usd) in windows.items():
                labels = (("scope", scope), ("window", window))
                spent.samples.append((spent.name, labels, spent_nano / budgets.NANO))
                if limit_usd is not None:
                    limit.samples.append((limit.name, labels, limit_usd))
        return [spent, limit]
