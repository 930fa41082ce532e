"""Trends, model analytics, the run graph, artifacts, run logs and retention, through the real HTTP API.

Events are posted to a real control plane (uvicorn on 127.0.0.1, real SQLite file or PostgreSQL); every
figure read back is checked against a hand computation written out in the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from outrider.control_plane import insights, settings
from outrider.control_plane.store import rollups
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

DAY = timedelta(days=1)


def ev(kind: str, run: str | None, when: datetime, *, target: str = "acme/web", data: dict[str, Any] | None = None) -> dict[str, Any]:
    body = support.event(kind, run, target=target, data=data)
    body["time"] = when.isoformat()
    return body


def usage(run: str, when: datetime, model: str = "claude", provider: str = "anthropic", **data: Any) -> dict[str, Any]:
    fields = {"provider": provider, "model": model, "input_tokens": 0, "output_tokens": 0} | data
    return ev("run.llm_usage", run, when, data=fields)


def post(api: RunningServer, batch: list[dict[str, Any]]) -> None:
    response = api.client.post("/v1/events", json=batch)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(batch)


def day_start() -> datetime:
    """Start of the first bucket of window=2d, bucket=1d (the day two days ago, UTC)."""
    return insights.bucket_start(datetime.now(UTC), 2 * DAY, DAY)


def scenario(day0: datetime) -> list[dict[str, Any]]:
    """r1 (task T1) succeeds on day 0 with a PR; r2 (task T2) fails on day 1; r3 (task T2, probe) succeeds on day 1."""
    day1 = day0 + DAY
    m = timedelta(minutes=1)
    return [
        ev("run.created", "r1", day0 + m, data={"task": {"id": "T1", "title": "Fix login"}}),
        ev("run.started", "r1", day0 + 2 * m),
        usage("r1", day0 + 3 * m, input_tokens=1000, output_tokens=200, cost_usd=0.012, latency_s=1.0),
        ev("pr.created", "r1", day0 + 4 * m, data={"number": 1, "url": "https://git/pr/1"}),
        ev("run.succeeded", "r1", day0 + 5 * m),
        ev("run.created", "r2", day0 + 6 * m, data={"task_id": "T2"}),
        ev("run.started", "r2", day0 + 7 * m),
        usage("r2", day0 + 8 * m, input_tokens=10, output_tokens=10, latency_s=2.0, error="timeout"),
        usage("r2", day0 + 9 * m, model="gpt", provider="openai", input_tokens=5, output_tokens=5),
        ev("run.failed", "r2", day1 + m, data={"error_type": "TestFailure"}),
        ev("target.breaker.tripped", None, day1 + 2 * m),
        ev("run.created", "r3", day1 + 3 * m, data={"task_id": "T2"}),
        ev("run.admitted", "r3", day1 + 4 * m, data={"probe": True}),
        ev("run.started", "r3", day1 + 5 * m),
        usage("r3", day1 + 6 * m, input_tokens=500, output_tokens=0, cost_usd=0.5, latency_s=4.0),
        ev("pr.created", "r3", day1 + 7 * m, data={"number": 2, "url": "https://git/pr/2"}),
        ev("pr.created", "r3", day1 + 8 * m, data={"number": 3, "url": "https://git/pr/3"}),
        ev("pr.merged", "r3", day1 + 9 * m, data={"number": 2, "url": "https://git/pr/2"}),
        ev("run.succeeded", "r3", day1 + 10 * m),
        ev("run.created", "r4", day1 + 11 * m),
        ev("run.created", "other-1", day1 + 12 * m, target="other/repo"),
    ]


def test_trends_match_hand_computation(api: RunningServer) -> None:
    day0 = day_start()
    post(api, scenario(day0))
    body = api.client.get("/v1/analytics/trends", params={"window": "2d", "bucket": "1d"}).json()
    assert body["since"].startswith(day0.date().isoformat())
    b0, b1, b2 = body["buckets"]
    # Day 0: r1 and r2 started; r1 succeeded (1200 tokens, $0.012, one PR).
    assert (b0["runs_started"], b0["runs_finished"], b0["succeeded"], b0["failed"]) == (2, 1, 1, 0)
    assert b0["success_rate"] == 1.0 and b0["rolling_success_rate"] == 1.0
    assert b0["tokens_per_successful_run"] == 1200
    assert b0["prs"] == 1 and b0["cost_usd"] == pytest.approx(0.012) and b0["cost_per_pr_usd"] == pytest.approx(0.012)
    assert b0["breaker_trips"] == 0
    # Day 1: r3 started; r2 failed (no cost), r3 succeeded (500 tokens, $0.5, two PRs); one breaker trip.
    assert (b1["runs_started"], b1["runs_finished"], b1["succeeded"], b1["failed"]) == (1, 2, 1, 1)
    assert b1["success_rate"] == 0.5 and b1["rolling_success_rate"] == pytest.approx(2 / 3)
    assert b1["tokens_per_successful_run"] == 500
    assert b1["prs"] == 2 and b1["cost_usd"] == pytest.approx(0.5) and b1["cost_per_pr_usd"] == pytest.approx(0.25)
    assert b1["breaker_trips"] == 1
    # Today: nothing finished — rates and averages are null, not 0; the rolling rate carries over.
    assert b2["runs_finished"] == 0 and b2["success_rate"] is None and b2["tokens_per_successful_run"] is None
    assert b2["cost_usd"] is None and b2["cost_per_pr_usd"] is None and b2["rolling_success_rate"] == pytest.approx(2 / 3)

    only_other = api.client.get("/v1/analytics/trends", params={"window": "2d", "bucket": "1d", "target": "other/repo"}).json()
    assert sum(bucket["runs_finished"] + bucket["runs_started"] for bucket in only_other["buckets"]) == 0


def test_models_match_hand_computation(api: RunningServer) -> None:
    post(api, scenario(day_start()))
    body = api.client.get("/v1/analytics/models", params={"window": "3d"}).json()
    claude, gpt = body["models"]
    assert (claude["provider"], claude["model"], claude["calls"], claude["error_calls"]) == ("anthropic", "claude", 3, 1)
    assert claude["error_rate"] == pytest.approx(1 / 3)
    # Latencies 1, 2, 4 s: p50 = 2; p95 = 2 + 2 × 0.9 = 3.8; p99 = 2 + 2 × 0.98 = 3.96, read from the latency
    # histogram: within its documented bound (one bucket, 25 %) of the exact figures.
    assert claude["latency_samples"] == 3
    assert claude["latency_p50_seconds"] == pytest.approx(2.0, rel=0.25)
    assert claude["latency_p95_seconds"] == pytest.approx(3.8, rel=0.25) and claude["latency_p99_seconds"] == pytest.approx(3.96, rel=0.25)
    assert claude["tokens_per_call"] == pytest.approx((1200 + 20 + 500) / 3)
    assert claude["cost_usd"] == pytest.approx(0.512)
    assert (claude["runs"], claude["runs_finished"], claude["runs_succeeded"], claude["runs_failed"]) == (3, 3, 2, 1)
    assert claude["run_success_rate"] == pytest.approx(2 / 3) and claude["run_failure_rate"] == pytest.approx(1 / 3)
    assert (gpt["provider"], gpt["calls"], gpt["error_rate"], gpt["latency_samples"]) == ("openai", 1, 0.0, 0)
    assert gpt["latency_p50_seconds"] is None and gpt["cost_usd"] is None
    assert gpt["run_success_rate"] == 0.0 and gpt["run_failure_rate"] == 1.0
    assert api.client.get("/v1/analytics/models", params={"target": "other/repo"}).json()["models"] == []


def test_graph_walks_targets_tasks_runs_prs(api: RunningServer) -> None:
    post(api, scenario(day_start()))
    query = {"window": "3d", "target": "acme/web"}
    nodes = {node["id"]: node for node in api.client.get("/v1/graph/nodes", params=query).json()["items"]}
    edges = {(e["source"], e["target"], e["kind"]) for e in api.client.get("/v1/graph/edges", params=query).json()["items"]}
    assert set(nodes) == {
        "target:acme/web", "task:acme/web/T1", "task:acme/web/T2", "run:r1", "run:r2", "run:r3", "run:r4",
        "pr:acme/web#1", "pr:acme/web#2", "pr:acme/web#3",
    }
    assert nodes["task:acme/web/T1"]["label"] == "Fix login"
    assert nodes["task:acme/web/T2"]["status"] == "succeeded"  # its latest run's
    assert nodes["run:r2"]["status"] == "failed" and nodes["run:r4"]["status"] == "queued"
    assert nodes["pr:acme/web#2"]["status"] == "merged" and nodes["pr:acme/web#3"]["status"] == "open"
    assert edges == {
        ("target:acme/web", "task:acme/web/T1", "task"), ("task:acme/web/T1", "run:r1", "run"), ("run:r1", "pr:acme/web#1", "pr"),
        ("target:acme/web", "task:acme/web/T2", "task"), ("task:acme/web/T2", "run:r2", "run"),
        ("task:acme/web/T2", "run:r3", "run"), ("run:r2", "run:r3", "retry"), ("target:acme/web", "run:r3", "probe"),
        ("run:r3", "pr:acme/web#2", "pr"), ("run:r3", "pr:acme/web#3", "pr"), ("target:acme/web", "run:r4", "run"),
    }
    limited = api.client.get("/v1/graph/nodes", params={**query, "limit": 1}).json()
    assert limited["truncated"] is True and {n["id"] for n in limited["items"] if n["kind"] == "run"} == {"run:r1"}
    record = api.client.get("/v1/runs/r1").json()
    assert (record["task_id"], record["task_title"], record["probe"]) == ("T1", "Fix login", False)
    assert api.client.get("/v1/runs/r3").json()["probe"] is True


def test_empty_store(api: RunningServer) -> None:
    trends = api.client.get("/v1/analytics/trends", params={"window": "1d", "bucket": "6h"}).json()
    assert 4 <= len(trends["buckets"]) <= 5
    for bucket in trends["buckets"]:
        assert bucket["runs_finished"] == 0 and bucket["success_rate"] is None and bucket["rolling_success_rate"] is None
        assert bucket["tokens_per_successful_run"] is None and bucket["cost_per_pr_usd"] is None
    assert api.client.get("/v1/analytics/models").json()["models"] == []
    assert api.client.get("/v1/graph/nodes").json()["items"] == []
    assert api.client.get("/v1/graph/edges").json()["items"] == []
    assert api.client.get("/v1/runs/nope/logs").json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        ("/v1/analytics/trends", {"window": "seven days"}, "invalid_window"),
        ("/v1/analytics/trends", {"bucket": "0h"}, "invalid_bucket"),
        ("/v1/analytics/trends", {"window": "1d", "bucket": "2d"}, "invalid_bucket"),
        ("/v1/analytics/trends", {"window": "7d", "bucket": "1s"}, "invalid_bucket"),
        ("/v1/analytics/models", {"window": "-1d"}, "invalid_window"),
        ("/v1/graph/nodes", {"window": "1y"}, "invalid_window"),
        ("/v1/graph/edges", {"limit": "0"}, None),
        ("/v1/runs/r1/logs", {"level": "loud"}, None),
        ("/v1/runs/r1/logs", {"cursor": "!!"}, "invalid_cursor"),
    ],
)
def test_bad_parameters_are_422_json(api: RunningServer, path: str, query: dict[str, str], code: str | None) -> None:
    response = api.client.get(path, params=query)
    assert response.status_code == 422
    body = response.json()
    assert isinstance(body["error"], str) and body["message"]
    if code is not None:
        assert body["error"] == code


def test_artifacts_on_the_run_record(api: RunningServer) -> None:
    now = datetime.now(UTC)
    sha = "a" * 64
    post(api, [
        ev("run.created", "ra", now),
        ev("run.artifact", "ra", now + timedelta(seconds=2), data={"key": "patch", "kind": "patch", "bytes": 20, "sha256": sha, "url": "s3://b/p2"}),
        ev("run.artifact", "ra", now + timedelta(seconds=1), data={"key": "patch", "kind": "patch", "bytes": 10, "url": "s3://b/p1"}),
        ev("run.artifact", "ra", now, data={"key": "report", "kind": "report"}),
    ])
    artifacts = api.client.get("/v1/runs/ra").json()["artifacts"]
    assert [(a["key"], a["bytes"], a["sha256"], a["url"]) for a in artifacts] == [
        ("patch", 20, sha, "s3://b/p2"),  # the later event of the same key wins, whatever the arrival order
        ("report", None, None, None),
    ]
    bad = api.client.post("/v1/events", json=ev("run.artifact", "ra", now, data={"key": "x", "kind": "k", "sha256": "nothex"}))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "data.sha256"


def test_logs_page_filter_and_follow(api: RunningServer) -> None:
    now = datetime.now(UTC)
    levels = ["debug", "info", "warning", "error"]
    post(api, [ev("run.log", "rl", now + timedelta(seconds=i), data={"level": lv, "message": f"line {i}"}) for i, lv in enumerate(levels)])
    post(api, [ev("run.log", "other", now, data={"level": "error", "message": "not mine"})])
    page = api.client.get("/v1/runs/rl/logs", params={"level": "info", "limit": 2}).json()
    assert [(line["level"], line["message"]) for line in page["items"]] == [("info", "line 1"), ("warning", "line 2")]
    rest = api.client.get("/v1/runs/rl/logs", params={"level": "info", "cursor": page["next_cursor"]}).json()
    assert [line["message"] for line in rest["items"]] == ["line 3"] and rest["next_cursor"] is None
    assert len(api.client.get("/v1/runs/rl/logs").json()["items"]) == 4

    received: list[dict[str, Any]] = []
    with api.client.stream("GET", "/v1/runs/rl/logs", params={"follow": "true", "level": "error"}, timeout=20) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            received.append(json.loads(line[6:]))
            if len(received) == 1:  # the stored error line came first; now a new one is posted while following
                post(api, [
                    ev("run.log", "rl", now + timedelta(seconds=9), data={"level": "info", "message": "too low"}),
                    ev("run.log", "rl", now + timedelta(seconds=10), data={"level": "critical", "message": "live"}),
                ])
            if len(received) == 2:
                break
    assert [line["message"] for line in received] == ["line 3", "live"]


def _totals(api: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = api.client.get("/metrics").text
    keep = ("outrider_runs_total", "outrider_llm_tokens_total", "outrider_llm_cost_usd_total", "outrider_prs_created_total",
            "outrider_events_received_total", "outrider_run_duration_seconds_count", "outrider_run_duration_seconds_sum")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in keep
    }


def test_retention_sweeps_events_but_keeps_runs_and_totals(
    make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]
) -> None:
    api = start_server(make_settings(retention_days=1, retention_sweep_interval_seconds=0.2))
    old = datetime.now(UTC) - 10 * DAY
    recent = datetime.now(UTC) - timedelta(hours=1)
    post(api, [
        ev("run.created", "old", old),
        ev("run.started", "old", old + timedelta(seconds=1)),
        usage("old", old + timedelta(seconds=2), input_tokens=7, output_tokens=3, cost_usd=0.25),
        ev("run.log", "old", old + timedelta(seconds=3), data={"level": "info", "message": "old line"}),
        ev("pr.created", "old", old + timedelta(seconds=4), data={"number": 9, "url": "https://git/pr/9"}),
        ev("run.succeeded", "old", old + timedelta(seconds=5)),
        ev("run.created", "new", recent),
        ev("run.log", "new", recent, data={"level": "info", "message": "new line"}),
    ])
    before = _totals(api)
    assert before[("outrider_llm_tokens_total", (("direction", "input"), ("model", "claude"), ("namespace", "default"), ("target", "acme/web")))] == 7
    deadline = time.monotonic() + 20
    while api.client.get("/v1/events", params={"run_id": "old"}).json()["items"]:
        assert time.monotonic() < deadline, "the sweep did not delete the old events"
        time.sleep(0.1)
    assert api.client.get("/v1/runs/old/logs").json()["items"] == []
    assert [line["message"] for line in api.client.get("/v1/runs/new/logs").json()["items"]] == ["new line"]
    record = api.client.get("/v1/runs/old").json()
    assert (record["status"], record["pr_count"], record["llm_usage"]["total"]["input_tokens"]) == ("succeeded", 1, 7)
    assert _totals(api) == before


def test_migrations_carry_stored_calls_into_the_rollups(tmp_path: Any) -> None:
    """A store created before 0004 keeps its history: 0004 filled a per-call table from the stored events, and
    0008 rolls those calls up (hour, minute, latency histogram, the run's models) before dropping the table."""
    from importlib import resources

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from outrider.control_plane import store

    engine = store.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        body = usage("r9", datetime(2026, 1, 1, tzinfo=UTC), input_tokens=3, output_tokens=4, cost_usd=0.5, latency_s=1.25, error="boom")
        connection.execute(
            sa.text("INSERT INTO events (source, event_id, type, time, target, run_id, received_at, body) "
                    "VALUES (:s, :i, 'run.llm_usage', '2026-01-01 00:00:00.000000', 'acme/web', 'r9', '2026-01-01 00:00:01.000000', :b)"),
            {"s": body["source"], "i": body["id"], "b": json.dumps(body)},
        )
    store.migrate(engine)
    with engine.connect() as connection:
        hours = connection.execute(sa.text("SELECT hour, namespace, target, provider, model, calls, errors, input_tokens, "
                                           "output_tokens, cost_nano_usd, priced FROM rollup_llm")).all()
        latency = connection.execute(sa.text("SELECT bucket, count FROM rollup_llm_latency")).all()
        spend = connection.execute(sa.text("SELECT minute, target, cost_nano_usd FROM rollup_spend")).all()
        used = connection.execute(sa.text("SELECT namespace, run_id, provider, model, target FROM run_models")).all()
        checkpoint = connection.execute(sa.text("SELECT position FROM projector_state")).scalar()
        tables_left = sa.inspect(connection).get_table_names()
    engine.dispose()
    hour = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) // 3600
    assert [tuple(row) for row in hours] == [(hour, "default", "acme/web", "anthropic", "claude", 1, 1, 3, 4, 500_000_000, 1)]
    assert [tuple(row) for row in latency] == [(rollups.latency_bucket(1.25), 1)]
    assert [tuple(row) for row in spend] == [(hour * 60, "acme/web", 500_000_000)]
    assert [tuple(row) for row in used] == [("default", "r9", "anthropic", "claude", "acme/web")]
    assert checkpoint == 1 and "llm_calls" not in tables_left  # the old events were folded when stored
