"""Budgets at admission, end to end: the operator against KMock and a real control plane (uvicorn on 127.0.0.1).

Spend is posted as ``run.llm_usage`` events whose times sit just inside the rolling hour, so the window frees
up a few seconds into the test — the operator must notice by its own timer (resets_at), not by a new event.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from operator_harness import Cluster, Operator, wait_for

from tests.conftest import free_port

TOKEN = "op-token"


class ControlPlane:
    def __init__(self, tmp_path: Path) -> None:
        from outrider.control_plane import app as app_module
        from outrider.control_plane import settings as cp_settings

        config = cp_settings.Settings(database_url=f"sqlite:///{tmp_path / 'cp.db'}", api_tokens=TOKEN)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app_module.create_app(config), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, what="control plane started")
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"})

    def spend(self, target: str, cost: float, at: dt.datetime, n: int) -> None:
        body = {"specversion": "1.0", "id": f"usage-{target}-{n}", "source": "/test", "type": "run.llm_usage",
                "time": at.isoformat(), "target": target, "runid": f"{target}-past",
                "data": {"provider": "anthropic", "model": "claude", "input_tokens": 1, "output_tokens": 1,
                         "cost_usd": cost}}
        response = self.client.post("/v1/events", json=[body])
        assert response.status_code == 202, response.text

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path)
    try:
        yield cp
    finally:
        cp.stop()


def admitted(cluster: Cluster, run: str) -> bool:
    job = cluster.job(run)
    return job is not None and job["spec"]["suspend"] is False


def reason(cluster: Cluster, run: str) -> Any:
    return cluster.run_status(run).get("reason")


def test_spend_over_the_limit_holds_until_the_window_frees_up(cluster: Cluster, operator_env: dict[str, str],
                                                              control_plane: ControlPlane) -> None:
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    # $0.60 that leaves the rolling hour 4 s from now, and $0.30 that stays: $0.90 of $1.00 spent.
    control_plane.spend("repo-a", 0.6, now - hour + dt.timedelta(seconds=4), 1)
    control_plane.spend("repo-a", 0.3, now - dt.timedelta(minutes=5), 2)
    operator_env.update(OUTRIDER_URL=control_plane.url, OUTRIDER_TOKEN=TOKEN, OUTRIDER_BUDGET_CACHE_SECONDS="0")
    operator = Operator(operator_env)
    try:
        cluster.autonomy(enabled="true")
        cluster.target("repo-a", maxConcurrentRuns=5, budget={"usdPerHour": 1.0})
        cluster.target("repo-free", maxConcurrentRuns=5)
        operator.start()
        cluster.run("r1", "repo-a")
        wait_for(lambda: admitted(cluster, "r1"), what="r1 admitted under the budget")
        # The Run's LLM calls cross the limit: $1.10 of $1.00.
        control_plane.spend("repo-a", 0.2, dt.datetime.now(dt.UTC), 3)
        cluster.run("r2", "repo-a")
        cluster.run("f1", "repo-free")
        wait_for(lambda: reason(cluster, "r2") == "BudgetExceeded", what="r2 held by the budget")
        message = cluster.run_status("r2")["message"]
        assert "$1.10 of $1.00 in the last 1h" in message and "frees up at" in message, message
        assert not admitted(cluster, "r2")
        wait_for(lambda: cluster.target_status("repo-a").get("healthReason") == "BudgetExceeded", what="Target Blocked")
        admitting = {c["type"]: c for c in cluster.target_status("repo-a")["conditions"]}["Admitting"]
        assert (admitting["status"], admitting["reason"]) == ("False", "BudgetExceeded")  # the hold reason, as a condition
        assert cluster.target_status("repo-a")["health"] == "Blocked"
        wait_for(lambda: admitted(cluster, "f1"), what="a Target without a budget is unaffected")
        # No new event arrives: the $0.60 leaves the window (4 s after the start) and the timer admits r2.
        wait_for(lambda: admitted(cluster, "r2"), timeout=15, what="r2 admitted once the window freed up")
        assert dt.datetime.now(dt.UTC) >= now + dt.timedelta(seconds=4)
        # The operator reported its limit: the control plane shows it next to the spend.
        budgets = wait_for(lambda: (d := control_plane.client.get("/v1/budgets", params={"target": "repo-a"}).json())
                           and d["budgets"][1]["windows"][0]["limit_usd"] == 1.0 and d, what="limit reported")
        assert budgets["budgets"][1]["windows"][0]["spent_usd"] == pytest.approx(0.5)
    finally:
        operator.stop()


def test_unreachable_control_plane_holds_budgeted_targets_only(cluster: Cluster, operator_env: dict[str, str]) -> None:
    operator_env.update(OUTRIDER_URL=f"http://127.0.0.1:{free_port()}", OUTRIDER_TOKEN=TOKEN)
    operator = Operator(operator_env)
    try:
        cluster.autonomy(enabled="true")
        cluster.target("repo-a", budget={"usdPerDay": 5})
        cluster.target("repo-free")
        operator.start()
        cluster.run("r1", "repo-a")
        cluster.run("f1", "repo-free")
        wait_for(lambda: reason(cluster, "r1") == "BudgetUnknown", what="held: spend unknown")
        assert "control plane unreachable" in cluster.run_status("r1")["message"]
        wait_for(lambda: admitted(cluster, "f1"), what="no budget: admitted")
        assert not admitted(cluster, "r1")
    finally:
        operator.stop()


def test_an_invalid_global_budget_is_config_invalid(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true", budgetUsdPerHour="ten")
    cluster.target("repo-free")
    operator.start()
    cluster.run("f1", "repo-free")
    wait_for(lambda: reason(cluster, "f1") == "ConfigInvalid", what="fail closed on a broken global budget")
    assert "budgetUsdPerHour" in cluster.run_status("f1")["message"]
