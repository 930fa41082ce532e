"""Namespaces are tenants: team-a and team-b both have Target ``web`` and Run ``web-1``; their records, targets
and metrics stay apart, and a key bound to one namespace sees only its own in every listing, stream and page
(another tenant's run is 404, never 403: no existence leak)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

OPERATOR_TOKEN = "operator-token-for-tenant-tests-0123"


@pytest.fixture
def server(make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> RunningServer:
    return start_server(make_settings(operator_tokens=OPERATOR_TOKEN))


def tenant_run(namespace: str, cost: float, fail: bool) -> list[dict[str, Any]]:
    """Run web-1 of Target web in ``namespace``: created, an LLM call of ``cost``, then its end."""
    ends = support.event("run.failed", "web-1", target="web", at=60, data={"message": "boom"}) if fail else \
        support.event("run.succeeded", "web-1", target="web", at=60)
    batch = [
        support.event("run.created", "web-1", target="web", at=0),
        support.event("run.llm_usage", "web-1", target="web", at=10, data={
            "provider": "anthropic", "model": "claude", "input_tokens": 100, "output_tokens": 10, "cost_usd": cost}),
        support.event("run.log", "web-1", target="web", at=20, data={"level": "info", "message": f"hello from {namespace}"}),
        ends,
    ]
    return [{**event, "namespace": namespace} for event in batch]


def target_status(namespace: str, health: str) -> dict[str, Any]:
    return {**support.event("target.status", None, target="web", source="/outrider/operator", data={
        "health": health, "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0, "active_runs": 0,
        "pending_runs": 0, "max_open_prs": 1, "max_concurrent_runs": 1}), "namespace": namespace}


def reader(server: RunningServer, namespace: str) -> httpx.Client:
    secret = server.client.post("/v1/keys", json={"role": "read", "namespaces": [namespace]}).json()["secret"]
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def seed(server: RunningServer) -> None:
    for namespace, cost, fail in (("team-a", 1.0, False), ("team-b", 2.5, True)):
        writer_key = server.client.post("/v1/keys", json={"role": "ingest", "namespaces": [namespace]}).json()["secret"]
        writer = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {writer_key}"}, timeout=30)
        events = [{k: v for k, v in e.items() if k != "namespace"} for e in tenant_run(namespace, cost, fail)]
        assert writer.post("/v1/events", json=events).status_code == 202  # the namespace comes from the key
    operator = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)
    for namespace, health in (("team-a", "Healthy"), ("team-b", "Failed")):
        assert operator.post("/v1/events", json=target_status(namespace, health)).status_code == 202
    server.caught_up()  # other clients wrote: read once the projection covers their events


def test_two_tenants_with_the_same_names_stay_apart(server: RunningServer) -> None:
    seed(server)
    admin = server.client
    a = admin.get("/v1/runs/web-1", params={"namespace": "team-a"}).json()
    b = admin.get("/v1/runs/web-1", params={"namespace": "team-b"}).json()
    assert (a["namespace"], a["status"], a["event_count"], a["llm_usage"]["total"]["cost_usd"]) == ("team-a", "succeeded", 4, 1.0)
    assert (b["namespace"], b["status"], b["event_count"], b["llm_usage"]["total"]["cost_usd"]) == ("team-b", "failed", 4, 2.5)
    ambiguous = admin.get("/v1/runs/web-1")
    assert ambiguous.status_code == 409 and ambiguous.json()["error"] == "ambiguous_run"
    assert {d["namespace"] for d in ambiguous.json()["detail"]} == {"team-a", "team-b"}
    listed = admin.get("/v1/runs").json()["items"]
    assert sorted((r["namespace"], r["run_id"]) for r in listed) == [("team-a", "web-1"), ("team-b", "web-1")]
    targets = admin.get("/v1/targets").json()
    assert sorted((t["namespace"], t["target"], t["health"]) for t in targets) == [
        ("team-a", "web", "Healthy"), ("team-b", "web", "Failed")]
    metrics = admin.get("/metrics").text
    assert 'outrider_runs_total{namespace="team-a",status="succeeded",target="web"} 1.0' in metrics
    assert 'outrider_runs_total{namespace="team-b",status="failed",target="web"} 1.0' in metrics


def test_a_tenants_key_sees_only_its_own(server: RunningServer) -> None:
    seed(server)
    team_a = reader(server, "team-a")
    run = team_a.get("/v1/runs/web-1").json()  # not ambiguous for team-a: it sees one
    assert run["namespace"] == "team-a" and run["status"] == "succeeded"
    assert team_a.get("/v1/runs/web-1", params={"namespace": "team-b"}).status_code == 404
    assert [(r["namespace"], r["run_id"]) for r in team_a.get("/v1/runs").json()["items"]] == [("team-a", "web-1")]
    events = team_a.get("/v1/events").json()["items"]
    assert events and {e["event"]["namespace"] for e in events} == {"team-a"}
    timed = team_a.get("/v1/events", params={"since": "2000-01-01T00:00:00Z"}).json()["items"]
    assert timed and {e["event"]["namespace"] for e in timed} == {"team-a"}
    logs = team_a.get("/v1/runs/web-1/logs").json()["items"]
    assert [line["message"] for line in logs] == ["hello from team-a"]
    assert [(t["namespace"], t["health"]) for t in team_a.get("/v1/targets").json()] == [("team-a", "Healthy")]
    summary = team_a.get("/v1/runs/summary", params={"window": "3650d"}).json()
    assert summary["total"] == 1
    errors = team_a.get("/v1/analytics/errors", params={"window": "3650d"}).json()
    assert errors["failed"] == 0
    models = team_a.get("/v1/analytics/models", params={"window": "3650d"}).json()["models"]
    assert [m["cost_usd"] for m in models] == [1.0]
    nodes = team_a.get("/v1/graph/nodes", params={"window": "3650d"}).json()["items"]
    assert [n["label"] for n in nodes if n["kind"] == "run"] == ["web-1"]
    budgets = team_a.get("/v1/budgets").json()["budgets"]
    assert [(b["scope"], b["namespace"]) for b in budgets] == [("web", "team-a")]  # no global scope: it spans tenants
    operator = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)
    every = operator.get("/v1/budgets").json()["budgets"]
    assert [(b["scope"], b["namespace"]) for b in every] == [("global", None), ("web", "team-a"), ("web", "team-b")]
    one = operator.get("/v1/budgets", params={"target": "web", "namespace": "team-b"}).json()["budgets"]
    assert [(b["scope"], b["namespace"]) for b in one] == [("global", None), ("web", "team-b")]


def test_a_tenants_live_stream_carries_only_its_events(server: RunningServer) -> None:
    seed(server)
    secret = server.client.post("/v1/keys", json={"role": "read", "namespaces": ["team-b"]}).json()["secret"]
    with httpx.stream("GET", f"{server.url}/v1/events/stream", params={"after": 0},
                      headers={"Authorization": f"Bearer {secret}"}, timeout=httpx.Timeout(10.0)) as response:
        seen: list[dict[str, Any]] = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if len(seen) == 5:  # team-b's four run events and its target status
                    break
    assert {e["namespace"] for e in seen} == {"team-b"}


def test_the_console_shows_a_tenant_only_its_own(server: RunningServer) -> None:
    seed(server)
    secret = server.client.post("/v1/keys", json={"role": "read", "namespaces": ["team-a"]}).json()["secret"]
    browser = httpx.Client(base_url=server.url, timeout=30, follow_redirects=True)
    assert browser.post("/login", data={"token": secret, "next": "/runs"}).status_code == 200
    runs = browser.get("/runs").text
    assert "/runs/web-1?namespace=team-a" in runs and "team-b" not in runs
    detail = browser.get("/runs/web-1").text
    assert "hello from team-a" in detail and "hello from team-b" not in detail
    assert browser.get("/runs/web-1", params={"namespace": "team-b"}).status_code == 404
    dashboard = browser.get("/").text
    assert "team-b" not in dashboard and "boom" not in dashboard
