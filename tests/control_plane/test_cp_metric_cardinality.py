"""/metrics stays bounded whatever clients send: 10,000 made-up targets and models fold into ``other`` beyond the
kept sets (Targets the operator reported first), and the totals stay exact."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

MAX_TARGETS, MAX_MODELS = 20, 5
BATCH = {"content-type": "application/cloudevents-batch+json"}


def test_ten_thousand_random_targets_and_models_stay_within_the_limits(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    api = start_server(make_sqlite_settings(metrics_max_targets=MAX_TARGETS, metrics_max_models=MAX_MODELS, operator_tokens="op-token-0123456789"))
    reported = {**support.event("target.status", None, target="the-real-one", source="/outrider/operator", data={
        "health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0, "active_runs": 0,
        "pending_runs": 0, "max_open_prs": 1, "max_concurrent_runs": 1})}
    assert api.client.post("/v1/events", json=reported, headers={"Authorization": "Bearer op-token-0123456789"}).status_code == 202
    for chunk in range(10):
        batch = [support.event("run.llm_usage", f"r-{chunk}-{i}", target=f"made-up-{chunk}-{i}", data={
            "provider": "p", "model": f"model-{chunk}-{i}", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.001})
            for i in range(1000)]
        assert api.client.post("/v1/events", json=batch, headers=BATCH).status_code == 202
    api.client.post("/v1/events", json=support.event("run.llm_usage", "real-1", target="the-real-one", data={
        "provider": "p", "model": "model-real", "input_tokens": 1, "output_tokens": 1}))
    text = api.client.get("/metrics").text
    tokens = [line for line in text.splitlines() if line.startswith("outrider_llm_tokens_total{")]
    targets = {re.search(r'target="([^"]*)"', line).group(1) for line in tokens}  # type: ignore[union-attr]
    models = {re.search(r'model="([^"]*)"', line).group(1) for line in tokens}  # type: ignore[union-attr]
    assert len(targets) <= MAX_TARGETS + 1 and "other" in targets and "the-real-one" in targets  # + other
    assert len(models) <= MAX_MODELS + 1 and "other" in models
    assert len(text.splitlines()) < 600, len(text.splitlines())
    total_input = sum(float(line.rsplit(" ", 1)[1]) for line in tokens if 'direction="input"' in line)
    assert total_input == 10_001  # folded, never dropped


def test_budget_scopes_stay_within_the_limit_and_sum_to_the_global_spend(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    """The budget gauges' ``scope`` is a target that spent in the last 24 h: made-up ones fold into ``other``."""
    api = start_server(make_sqlite_settings(metrics_max_targets=MAX_TARGETS, operator_tokens="op-token-0123456789"))
    now = datetime.now(UTC) - timedelta(minutes=5)
    reported = {**support.event("target.status", None, target="the-real-one", source="/outrider/operator", data={
        "health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0, "active_runs": 0,
        "pending_runs": 0, "max_open_prs": 1, "max_concurrent_runs": 1, "budget_usd_per_day": 5.0})}
    assert api.client.post("/v1/events", json=reported, headers={"Authorization": "Bearer op-token-0123456789"}).status_code == 202
    batch = [{**support.event("run.llm_usage", f"r-{i}", target=f"made-up-{i}", data={
        "provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.001 * (1 + i % 7)}),
        "time": now.isoformat()} for i in range(1000)]
    assert api.client.post("/v1/events", json=batch, headers=BATCH).status_code == 202
    text = api.client.get("/metrics").text
    spent = {(s.labels["scope"], s.labels["window"]): s.value for f in text_string_to_metric_families(text)
             for s in f.samples if s.name == "outrider_budget_spent_usd"}
    scopes = {scope for scope, _ in spent}
    assert "the-real-one" in scopes and "other" in scopes and "global" in scopes
    assert len(scopes) <= MAX_TARGETS + 2  # + global and other
    assert sum(v for (scope, window), v in spent.items() if window == "24h" and scope != "global") == \
        pytest.approx(spent[("global", "24h")]) == pytest.approx(sum(0.001 * (1 + i % 7) for i in range(1000)))
    limits = {s.labels["scope"] for f in text_string_to_metric_families(text) for s in f.samples if s.name == "outrider_budget_limit_usd"}
    assert limits == {"the-real-one"}  # other has no limit of its own


def test_a_deleted_target_leaves_the_status_and_metrics_and_comes_back_when_created_again(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    api = start_server(make_sqlite_settings(operator_tokens="op-token-0123456789"))
    operator = {"Authorization": "Bearer op-token-0123456789"}

    def status(n: int) -> dict[str, object]:
        return support.event("target.status", None, target="web", source="/outrider/operator", id=f"status-{n}", data={
            "health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0, "active_runs": 0,
            "pending_runs": 0, "max_open_prs": 1, "max_concurrent_runs": 1})

    deleted = support.event("target.deleted", None, target="web", source="/outrider/operator", id="deleted-1")
    finished = [support.event("run.created", "r1", target="web"), support.event("run.succeeded", "r1", target="web", at=5)]
    for batch in ([status(1)], finished):
        assert api.client.post("/v1/events", json=batch, headers=operator).status_code == 202
    assert [t["target"] for t in api.client.get("/v1/targets").json()] == ["web"]
    assert 'target="web"' in api.client.get("/metrics").text
    assert api.client.post("/v1/events", json=deleted, headers=operator).status_code == 202
    assert api.client.get("/v1/targets").json() == []
    text = api.client.get("/metrics").text
    assert 'target="web"' not in text
    assert 'outrider_runs_total{namespace="other",status="succeeded",target="other"} 1.0' in text
    assert api.client.post("/v1/events", json=status(2), headers=operator).status_code == 202  # created again
    assert [t["target"] for t in api.client.get("/v1/targets").json()] == ["web"]
    assert 'outrider_runs_total{namespace="default",status="succeeded",target="web"} 1.0' in api.client.get("/metrics").text


def test_folding_sums_into_other_without_changing_the_rows_it_was_given() -> None:
    """``cardinality.bound`` keeps the caller's rows as they were (it shares the kept ones, copies before summing)."""
    from outrider.control_plane import cardinality

    rows = [{"namespace": "ns", "target": f"t{i}", "model": "m", "input_tokens": i, "output_tokens": 1, "cost_nano_usd": 10}
            for i in range(5)]
    rows.append({**rows[0], "input_tokens": 7})  # a second row of a kept target: summed into the first
    given = [dict(row) for row in rows]
    out = cardinality.bound({"llm": rows}, [("ns", "t0")], max_targets=2, max_models=5)
    by_target = {row["target"]: row for row in out["llm"]}
    assert set(by_target) == {"t0", "t4", "other"}  # reported t0, then the busiest (t4), the rest folded
    assert by_target["other"]["input_tokens"] == 1 + 2 + 3 and by_target["other"]["cost_nano_usd"] == 30
    assert by_target["t0"]["input_tokens"] == 7 and by_target["t0"]["cost_nano_usd"] == 20
    assert rows == given
