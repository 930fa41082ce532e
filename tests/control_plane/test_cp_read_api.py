"""The read API on a real server (SQLite and PostgreSQL): empty state, run records, every filter, pagination
to the end, summaries and error analytics, 404s and 422s as JSON, and /openapi.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from outrider.control_plane import schemas
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def post(api: RunningServer, events: list[dict[str, Any]]) -> None:
    response = api.client.post("/v1/events", content=json.dumps(events), headers=support.BATCH)
    assert response.status_code == 202, response.text


def recent(hours_ago: float) -> float:
    """An ``at`` offset (seconds after BASE_TIME) that is ``hours_ago`` before now."""
    return (datetime.now(UTC) - timedelta(hours=hours_ago) - support.BASE_TIME).total_seconds()


def all_pages(api: RunningServer, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        response = api.client.get(path, params=params | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def test_empty_state(api: RunningServer) -> None:
    assert api.client.get("/v1/events").json() == {"items": [], "next_cursor": None}
    assert api.client.get("/v1/runs").json() == {"items": [], "next_cursor": None}
    summary = api.client.get("/v1/runs/summary").json()
    assert summary["total"] == 0
    assert set(summary["counts"].values()) == {0}
    assert summary["success_rate"] is None and summary["duration_p50_seconds"] is None and summary["cost_usd"] is None
    assert summary["latest_failure"] is None
    for by in ("target", "error_type", "stage"):
        errors = api.client.get("/v1/analytics/errors", params={"by": by}).json()
        assert errors["failed"] == 0 and errors["failure_rate"] is None and errors["groups"] == []
    missing = api.client.get("/v1/runs/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    nowhere = api.client.get("/v1/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["error"] == "not_found"


def test_run_record_of_a_successful_run(api: RunningServer) -> None:
    post(api, support.lifecycle("run-ok"))
    record = api.client.get("/v1/runs/run-ok").json()
    assert record["status"] == "succeeded"
    assert record["target"] == "acme/web"
    assert record["created_at"] == "2026-01-01T12:00:00Z"
    assert record["started_at"] == "2026-01-01T12:00:02Z"
    assert record["completed_at"] == "2026-01-01T12:00:42Z"
    assert record["duration_seconds"] == 40.0
    assert record["error_summary"] is None
    assert record["metrics"]["phase_timings"] == {
        "code": {"started_at": "2026-01-01T12:00:11Z", "duration_seconds": 29.0},
        "plan": {"started_at": "2026-01-01T12:00:03Z", "duration_seconds": 7.0},
    }
    assert record["metrics"]["resource_breakdown"] == {"llm_calls": 2, "retries": 1}
    assert record["metrics"]["notes"] == []
    usage = record["llm_usage"]
    assert usage["total"] == {"input_tokens": 4000, "output_tokens": 900, "cost_usd": 0.052, "calls": 2}
    assert usage["by_phase"]["plan"]["input_tokens"] == 1000
    assert usage["by_model"]["anthropic/claude"]["calls"] == 2
    assert record["pull_requests"] == [{"number": 7, "url": "https://example.test/pr/7", "merged": False}]
    assert record["pr_count"] == 1
    assert record["event_count"] == 14


def test_run_record_of_a_failed_run(api: RunningServer) -> None:
    post(api, support.lifecycle("run-bad", fail=True))
    record = api.client.get("/v1/runs/run-bad").json()
    assert record["status"] == "failed"
    assert record["error_summary"] == "TimeoutError in code: tests timed out after 60s"
    assert record["error_type"] == "TimeoutError" and record["error_stage"] == "code"
    assert record["metrics"]["phase_timings"]["code"]["duration_seconds"] is None
    assert record["pr_count"] == 0


def test_run_without_llm_usage_has_null_usage(api: RunningServer) -> None:
    post(api, [support.event("run.created", "run-q"), support.event("run.admitted", "run-q", at=1)])
    record = api.client.get("/v1/runs/run-q").json()
    assert record["status"] == "admitted"
    assert record["llm_usage"] is None
    assert record["completed_at"] is None and record["duration_seconds"] is None


def test_event_filters(api: RunningServer) -> None:
    post(api, support.lifecycle("run-a", target="acme/web"))
    post(api, support.lifecycle("run-b", target="acme/api", fail=True, start=100))
    page = api.client.get("/v1/events", params={"limit": 1000}).json()
    schemas.Page[schemas.StoredEvent].model_validate(page)  # the hand-assembled page matches its model
    every = page["items"]
    assert every[0]["received_at"].endswith("Z") and every[0]["event"]["time"] == "2026-01-01T12:00:00Z"
    assert [item["seq"] for item in every] == sorted(item["seq"] for item in every)

    def listed(**params: Any) -> list[dict[str, Any]]:
        return [item["event"] for item in all_pages(api, "/v1/events", **params)]

    assert {e["target"] for e in listed(target="acme/api")} == {"acme/api"}
    assert {e["runid"] for e in listed(run_id="run-a")} == {"run-a"}
    assert len(listed(run_id="run-a")) == 14
    assert [e["runid"] for e in listed(type="run.failed")] == ["run-b"]
    since = "2026-01-01T12:01:40Z"  # run-b starts at +100 s
    assert {e["runid"] for e in listed(since=since)} == {"run-b"}
    assert {e["runid"] for e in listed(until=since)} == {"run-a"}
    assert len(listed(since="2026-01-01T12:00:00Z", until="2026-01-01T12:00:02Z")) == 2
    assert listed(target="nobody") == []
    assert len(listed(since="2026-01-01T13:01:40+01:00")) == len(listed(since=since))  # offsets respected


def test_run_filters_and_pagination(api: RunningServer) -> None:
    for index in range(23):
        target = "acme/web" if index % 2 else "acme/api"
        post(api, support.lifecycle(f"run-{index:02d}", target=target, fail=index % 3 == 0, start=index * 10))
    post(api, [support.event("run.created", "run-queued", at=1000)])
    runs = all_pages(api, "/v1/runs", limit=5)
    assert len(runs) == 24 and len({r["run_id"] for r in runs}) == 24
    assert [r["created_at"] for r in runs] == sorted((r["created_at"] for r in runs), reverse=True)
    assert runs[0]["run_id"] == "run-queued"
    assert {r["target"] for r in all_pages(api, "/v1/runs", target="acme/web")} == {"acme/web"}
    failed = all_pages(api, "/v1/runs", status="failed", limit=2)
    assert {r["run_id"] for r in failed} == {f"run-{i:02d}" for i in range(0, 23, 3)}
    assert [r["run_id"] for r in all_pages(api, "/v1/runs", status="queued")] == ["run-queued"]
    late = all_pages(api, "/v1/runs", since="2026-01-01T12:03:00Z")
    assert {r["run_id"] for r in late} == {f"run-{i:02d}" for i in range(18, 23)} | {"run-queued"}
    assert api.client.get("/v1/runs", params={"status": "exploded"}).status_code == 422


def test_event_pagination_to_the_end(api: RunningServer) -> None:
    events = [support.event("run.log", "run-p", at=i, data={"level": "info", "message": str(i)}) for i in range(57)]
    post(api, events)
    first = api.client.get("/v1/events", params={"limit": 10}).json()
    assert len(first["items"]) == 10 and first["next_cursor"]
    items = all_pages(api, "/v1/events", limit=10)
    assert [item["event"]["data"]["message"] for item in items] == [str(i) for i in range(57)]
    exact = all_pages(api, "/v1/events", limit=57)
    assert len(exact) == 57
    last = api.client.get("/v1/events", params={"limit": 57}).json()
    assert last["next_cursor"] is None


def test_bad_parameters_are_422_json(api: RunningServer) -> None:
    for path, params in (
        ("/v1/events", {"limit": 1001}),
        ("/v1/events", {"limit": 0}),
        ("/v1/events", {"cursor": "garbage!"}),
        ("/v1/events", {"since": "yesterday"}),
        ("/v1/runs", {"cursor": "eyJzZXEiOjF9"}),  # an events cursor is not a runs cursor
        ("/v1/runs/summary", {"window": "forever"}),
        ("/v1/runs/summary", {"window": "0h"}),
        ("/v1/analytics/errors", {"window": "24x"}),
        ("/v1/analytics/errors", {"by": "colour"}),
    ):
        response = api.client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        body = response.json()
        assert body["error"] in {"invalid_request", "invalid_cursor", "invalid_window"}
        assert body["message"]


def test_summary_and_error_analytics(api: RunningServer) -> None:
    post(api, support.lifecycle("ok-1", target="acme/web", start=recent(3)))
    post(api, support.lifecycle("ok-2", target="acme/api", start=recent(2)))
    post(api, support.lifecycle("bad-1", target="acme/api", fail=True, start=recent(1)))
    post(api, support.lifecycle("old", target="acme/web", fail=True, start=recent(48)))
    post(api, [support.event("run.created", "waiting", at=recent(0.5))])
    summary = api.client.get("/v1/runs/summary", params={"window": "24h"}).json()
    assert summary["window"] == "24h"
    assert summary["counts"] == {"queued": 1, "admitted": 0, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert summary["total"] == 4
    assert summary["success_rate"] == 2 / 3
    assert summary["duration_p50_seconds"] == 40.0
    assert summary["duration_p95_seconds"] == 40.0 + 0.9 * 20.0  # 40, 40, 60: linear interpolation
    assert summary["input_tokens"] == 12000 and summary["output_tokens"] == 2700
    assert abs(summary["cost_usd"] - 0.156) < 1e-12
    assert summary["pr_count"] == 2
    assert summary["latest_failure"]["run_id"] == "bad-1"
    assert summary["latest_failure"]["error_summary"] == "TimeoutError in code: tests timed out after 60s"
    week = api.client.get("/v1/runs/summary", params={"window": "7d"}).json()
    assert week["total"] == 5 and week["counts"]["failed"] == 2

    by_target = api.client.get("/v1/analytics/errors", params={"window": "24h", "by": "target"}).json()
    assert by_target["failed"] == 1 and by_target["finished"] == 3 and by_target["failure_rate"] == 1 / 3
    assert by_target["groups"] == [
        {"key": "acme/api", "failed": 1, "finished": 2, "rate": 0.5},
        {"key": "acme/web", "failed": 0, "finished": 1, "rate": 0.0},
    ]
    by_type = api.client.get("/v1/analytics/errors", params={"window": "7d", "by": "error_type"}).json()
    assert by_type["groups"] == [{"key": "TimeoutError", "failed": 2, "finished": None, "rate": 1.0}]
    by_stage = api.client.get("/v1/analytics/errors", params={"window": "7d", "by": "stage"}).json()
    assert by_stage["groups"] == [{"key": "code", "failed": 2, "finished": None, "rate": 1.0}]


def test_openapi_documents_every_route_with_models(api: RunningServer) -> None:
    spec = api.anonymous.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/v1/events", "post"): "IngestResult",
        ("/v1/events", "get"): "Page_StoredEvent_",
        ("/v1/runs", "get"): "Page_RunRecord_",
        ("/v1/runs/summary", "get"): "RunSummary",
        ("/v1/runs/{run_id}", "get"): "RunRecord",
        ("/v1/analytics/errors", "get"): "ErrorAnalytics",
        ("/v1/health", "get"): "Health",
        ("/readyz", "get"): "Readiness",
    }
    for (path, method), model in expected.items():
        operation = paths[path][method]
        success = operation["responses"]["202" if method == "post" else "200"]
        assert success["content"]["application/json"]["schema"]["$ref"].endswith("/" + model), (path, method)
        assert model.split("_")[0] in json.dumps(spec["components"]["schemas"])
        if path.startswith("/v1/") and path != "/v1/health":
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
            assert error.endswith("/ErrorBody")
    assert "text/event-stream" in paths["/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert "/metrics" in paths
    body = paths["/v1/events"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/cloudevents+json", "application/json", "application/cloudevents-batch+json"}
    assert "CloudEvent" in spec["components"]["schemas"]
