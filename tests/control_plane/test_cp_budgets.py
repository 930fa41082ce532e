"""``GET /v1/budgets`` through the real HTTP API: rolling-window spend, limits from operator reports, resets_at.

Every figure is checked against a hand computation written out in the test; event times are placed relative
to now, so the 1 h and 24 h windows hold exactly the calls the test says.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def ev(kind: str, when: datetime, *, target: str | None = "web", run: str | None = "r1",
       data: dict[str, Any] | None = None) -> dict[str, Any]:
    body = support.event(kind, run, target=target, data=data)
    body["time"] = when.isoformat()
    return body


def usage(when: datetime, cost: float | None, target: str | None = "web") -> dict[str, Any]:
    data: dict[str, Any] = {"provider": "anthropic", "model": "claude", "input_tokens": 1, "output_tokens": 1}
    if cost is not None:
        data["cost_usd"] = cost
    return ev("run.llm_usage", when, target=target, data=data)


def target_status(name: str, when: datetime, **budget: Any) -> dict[str, Any]:
    data = {"health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0, "active_runs": 0,
            "pending_runs": 0, "open_prs": None, "max_open_prs": 2, "max_concurrent_runs": 1, **budget}
    return ev("target.status", when, target=name, run=None, data=data)


def heartbeat(when: datetime, **budget: Any) -> dict[str, Any]:
    return ev("operator.heartbeat", when, target=None, run=None,
              data={"autonomy_enabled": True, "heartbeat_seconds": 30, **budget})


def post(api: RunningServer, batch: list[dict[str, Any]]) -> None:
    response = api.client.post("/v1/events", json=batch)
    assert response.status_code == 202, response.text


def window(document: dict[str, Any], scope: str, name: str) -> dict[str, Any]:
    (budget,) = [b for b in document["budgets"] if b["scope"] == scope]
    (found,) = [w for w in budget["windows"] if w["window"] == name]
    return found


@pytest.fixture
def server(make_sqlite_settings: Callable[..., settings.Settings],
           start_server: Callable[[settings.Settings], RunningServer]) -> RunningServer:
    return start_server(make_sqlite_settings())


def test_spend_windows_limits_and_resets_at(server: RunningServer) -> None:
    now = datetime.now(UTC)
    ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    post(server, [
        target_status("web", ago(1), budget_usd_per_hour=1.0, budget_usd_per_day=2.0, budget_pacing="burst"),
        heartbeat(ago(1), budget_usd_per_hour=10.0),
        usage(ago(50), 0.5), usage(ago(40), 0.25), usage(ago(10), 0.25),  # 1.00 in the last hour: exceeded
        usage(ago(30), None),  # unpriced: counts nothing
        usage(ago(120), 0.75),  # only in the 24 h window
        usage(ago(60 * 25), 5.0),  # in neither
        usage(ago(5), 0.1, target="api"),  # another target: global only
    ])
    doc = server.client.get("/v1/budgets").json()
    assert [b["scope"] for b in doc["budgets"]] == ["global", "api", "web"]
    hour = window(doc, "web", "1h")
    assert (hour["spent_usd"], hour["limit_usd"], hour["remaining_usd"], hour["exceeded"]) == (1.0, 1.0, 0.0, True)
    # Under the limit once the 0.5 from 50 minutes ago leaves the window: at its time + 1 h.
    assert datetime.fromisoformat(hour["resets_at"]) == ago(50) + timedelta(hours=1)
    # The listing reads every scope at once (grouped); one scope asked alone (as the operator asks) reads the same.
    for budget in doc["budgets"][1:]:
        alone = server.client.get("/v1/budgets", params={"target": budget["scope"]}).json()["budgets"]
        assert [b["windows"] for b in alone] == [doc["budgets"][0]["windows"], budget["windows"]]
        assert alone[1]["avg_run_cost_usd"] == budget["avg_run_cost_usd"]
    day = window(doc, "web", "24h")
    assert (day["spent_usd"], day["limit_usd"], day["exceeded"], day["resets_at"]) == (1.75, 2.0, False, None)
    assert day["remaining_usd"] == pytest.approx(0.25)
    glob = window(doc, "global", "1h")
    assert (glob["spent_usd"], glob["limit_usd"], glob["exceeded"]) == (1.1, 10.0, False)
    assert window(doc, "global", "24h")["limit_usd"] is None and window(doc, "global", "24h")["exceeded"] is None
    api_hour = window(doc, "api", "1h")
    assert (api_hour["spent_usd"], api_hour["limit_usd"], api_hour["remaining_usd"]) == (0.1, None, None)

    only = server.client.get("/v1/budgets", params={"target": "web"}).json()
    assert [b["scope"] for b in only["budgets"]] == ["global", "web"] and only["budgets"][1]["pacing"] == "burst"
    # The operator's own, newer limits: judged against 3.0/h, nothing is exceeded.
    judged = server.client.get("/v1/budgets", params={"target": "web", "usd_per_hour": 3, "usd_per_day": 3}).json()
    assert window(judged, "web", "1h")["exceeded"] is False and window(judged, "web", "1h")["remaining_usd"] == 2.0
    unknown = server.client.get("/v1/budgets", params={"target": "nobody"}).json()
    glob = server.client.get("/v1/budgets", params={"target": "nobody", "global_usd_per_hour": 1.1}).json()
    assert window(glob, "global", "1h")["exceeded"] is True and window(glob, "global", "24h")["limit_usd"] is None
    assert window(unknown, "nobody", "1h") == {"window": "1h", "window_seconds": 3600, "limit_usd": None,
                                               "spent_usd": 0.0, "remaining_usd": None, "exceeded": None,
                                               "resets_at": None}


def test_bad_parameters_are_specific_422s_and_a_token_is_required(server: RunningServer) -> None:
    assert server.anonymous.get("/v1/budgets").status_code == 401
    for params in ({"usd_per_hour": "-1"}, {"usd_per_day": "nan"}, {"target": ""}):
        response = server.client.get("/v1/budgets", params=params)
        assert response.status_code == 422, (params, response.text)


def test_budget_metrics_at_scrape_time(server: RunningServer) -> None:
    now = datetime.now(UTC)
    post(server, [target_status("web", now - timedelta(minutes=1), budget_usd_per_day=2.0),
                  usage(now - timedelta(minutes=10), 0.25), usage(now - timedelta(hours=3), 0.5)])
    registry = server.registry
    assert registry.get_sample_value("outrider_budget_spent_usd", {"scope": "web", "window": "1h"}) == 0.25
    assert registry.get_sample_value("outrider_budget_spent_usd", {"scope": "web", "window": "24h"}) == 0.75
    assert registry.get_sample_value("outrider_budget_spent_usd", {"scope": "global", "window": "24h"}) == 0.75
    assert registry.get_sample_value("outrider_budget_limit_usd", {"scope": "web", "window": "24h"}) == 2.0
    assert registry.get_sample_value("outrider_budget_limit_usd", {"scope": "web", "window": "1h"}) is None
    text = server.client.get("/metrics").text
    assert 'outrider_budget_spent_usd{scope="web",window="1h"} 0.25' in text


def test_average_run_cost_for_even_pacing(server: RunningServer) -> None:
    now = datetime.now(UTC)
    batch = []
    for run, cost, age in (("a1", 0.2, 30), ("a2", 0.4, 20), ("old", 9.0, 60 * 30)):  # "old" finished 30 h ago
        start = now - timedelta(minutes=age)
        batch += [ev("run.started", start, run=run), usage(start + timedelta(seconds=1), cost) | {"runid": run},
                  ev("run.succeeded", start + timedelta(seconds=2), run=run)]
    batch.append(ev("run.started", now, run="open"))  # unfinished: not averaged
    post(server, batch)
    doc = server.client.get("/v1/budgets", params={"target": "web"}).json()
    (web,) = [b for b in doc["budgets"] if b["scope"] == "web"]
    assert web["avg_run_cost_usd"] == pytest.approx(0.3)
    assert server.client.get("/v1/budgets", params={"target": "none"}).json()["budgets"][1]["avg_run_cost_usd"] is None


def test_budget_metrics_equal_get_budgets(server: RunningServer) -> None:
    """The metrics read spend with one grouped query per window; every series equals what GET /v1/budgets says."""
    now = datetime.now(UTC)
    batch = [heartbeat(now - timedelta(minutes=1), budget_usd_per_hour=10.0),
             target_status("limited-only", now - timedelta(minutes=2), budget_usd_per_hour=1.5),
             usage(now - timedelta(minutes=3), 0.3, target=None), usage(now - timedelta(minutes=4), None, target="unpriced")]
    for index in range(12):
        name = f"t{index:02d}"
        batch += [usage(now - timedelta(minutes=5 + index), 0.01 * (index + 1), target=name),
                  usage(now - timedelta(hours=2 + index), 0.5, target=name)]
        if index % 3 == 0:
            batch.append(target_status(name, now - timedelta(minutes=1), budget_usd_per_day=1.0 + index))
    batch.append(usage(now - timedelta(hours=30), 7.0, target="stale"))  # outside both windows: no scope
    post(server, batch)
    registry = server.registry
    document = server.client.get("/v1/budgets").json()
    scopes = {b["scope"] for b in document["budgets"]}
    assert {"global", "limited-only", "t00", "t11"} <= scopes and "stale" not in scopes and "unpriced" not in scopes
    for budget in document["budgets"]:
        for found in budget["windows"]:
            labels = {"scope": budget["scope"], "window": found["window"]}
            assert registry.get_sample_value("outrider_budget_spent_usd", labels) == pytest.approx(found["spent_usd"]), labels
            assert registry.get_sample_value("outrider_budget_limit_usd", labels) == found["limit_usd"], labels
    spent_scopes = {s.labels["scope"] for m in registry.collect() if m.name == "outrider_budget_spent_usd" for s in m.samples}
    assert spent_scopes == scopes
