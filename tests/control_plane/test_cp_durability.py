"""Convergence and durability on a real server: out-of-order and duplicated delivery gives the same record,
concurrent clients all get their own answer, and a restart on the same database keeps history and totals."""

from __future__ import annotations

import concurrent.futures
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from outrider.control_plane import settings
from tests.conftest import counts
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

METRICS = (
    ("outrider_events_received_total", {"type": "run.llm_usage"}),
    ("outrider_events_received_total", {"type": "run.created"}),
    ("outrider_events_rejected_total", {"reason": "invalid_event"}),
    ("outrider_runs_total", {"namespace": "default", "target": "acme/web", "status": "succeeded"}),
    ("outrider_runs_total", {"namespace": "default", "target": "acme/api", "status": "failed"}),
    ("outrider_run_duration_seconds_count", {"namespace": "default", "target": "acme/web"}),
    ("outrider_run_duration_seconds_sum", {"namespace": "default", "target": "acme/web"}),
    ("outrider_run_duration_seconds_bucket", {"namespace": "default", "target": "acme/web", "le": "60"}),
    ("outrider_run_duration_seconds_bucket", {"namespace": "default", "target": "acme/web", "le": "30"}),
    ("outrider_llm_tokens_total", {"namespace": "default", "target": "acme/web", "model": "claude", "direction": "input"}),
    ("outrider_llm_tokens_total", {"namespace": "default", "target": "acme/api", "model": "claude", "direction": "output"}),
    ("outrider_llm_cost_usd_total", {"namespace": "default", "target": "acme/web", "model": "claude"}),
    ("outrider_prs_created_total", {"namespace": "default", "target": "acme/web"}),
)


def renamed(events: list[dict[str, Any]], run: str) -> list[dict[str, Any]]:
    return [{**e, "runid": run, "id": f"{run}-{e['id']}"} for e in events]


def test_out_of_order_and_duplicate_delivery_converges(api: RunningServer) -> None:
    events = support.lifecycle("tmpl")
    events.append(support.event("run.failed", "tmpl", at=41, data={"error_type": "Late", "message": "duplicate terminal"}))
    events.append(support.event("pr.merged", "tmpl", at=50, data={"number": 7, "url": "https://example.test/pr/7"}))
    in_order = renamed(events, "run-ordered")
    for item in in_order:
        assert api.client.post("/v1/events", json=item).status_code == 202
    rng = random.Random(7)
    messy = renamed(events, "run-messy")
    messy = messy + rng.sample(messy, 6)  # redeliveries
    rng.shuffle(messy)
    position = 0
    while position < len(messy):  # random batch sizes, some repeated whole
        size = rng.randint(1, 5)
        chunk = messy[position : position + size]
        position += size
        for _ in range(rng.randint(1, 2)):
            response = api.client.post("/v1/events", content=json.dumps(chunk), headers=support.BATCH)
            assert response.status_code == 202
    ordered = api.client.get("/v1/runs/run-ordered").json()
    shuffled = api.client.get("/v1/runs/run-messy").json()
    assert ordered.pop("run_id") == "run-ordered" and shuffled.pop("run_id") == "run-messy"
    assert shuffled == ordered
    assert ordered["event_count"] == len(events)
    assert ordered["pull_requests"] == [{"number": 7, "url": "https://example.test/pr/7", "merged": True}]
    assert ordered["status"] == "succeeded"  # the later terminal event wins
    assert api.registry.get_sample_value("outrider_prs_created_total", {"namespace": "default", "target": "acme/web"}) == 2  # once per run


def test_concurrent_clients_each_get_their_own_answer(api: RunningServer) -> None:
    def send(index: int) -> tuple[int, dict[str, Any]]:
        batch = support.lifecycle(f"run-c{index % 8}")
        batch = [{**e, "id": f"c{index % 8}-{n}"} for n, e in enumerate(batch)]
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {support.TOKEN}"}, timeout=30) as client:
            response = client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
            return response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, range(32)))
    assert {status for status, _ in results} == {202}
    per_batch = len(support.lifecycle("x"))
    assert sum(body["accepted"] for _, body in results) == 8 * per_batch
    assert sum(body["duplicates"] for _, body in results) == 24 * per_batch
    assert all(body["accepted"] + body["duplicates"] == per_batch for _, body in results)
    api.caught_up()  # other clients wrote
    runs = api.client.get("/v1/runs").json()["items"]
    assert len(runs) == 8 and {r["event_count"] for r in runs} == {per_batch}


def test_restart_keeps_history_records_and_metric_totals(make_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    config = make_settings()
    first = start_server(config)
    for index in range(3):
        batch = support.lifecycle(f"web-{index}", target="acme/web", start=index * 100)
        assert first.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH).status_code == 202
    batch = support.lifecycle("api-0", target="acme/api", fail=True)
    assert first.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH).status_code == 202
    bad = first.client.post("/v1/events", json={"specversion": "1.0"})
    assert bad.status_code == 422
    events_before = first.client.get("/v1/events", params={"limit": 1000}).json()
    runs_before = first.client.get("/v1/runs").json()
    metrics_before = {(name, tuple(labels.items())): first.registry.get_sample_value(name, labels) for name, labels in METRICS}
    assert all(value is not None for value in metrics_before.values()), metrics_before
    assert metrics_before[("outrider_runs_total", (("namespace", "default"), ("target", "acme/web"), ("status", "succeeded")))] == 3
    assert metrics_before[("outrider_llm_tokens_total", (("namespace", "default"), ("target", "acme/web"), ("model", "claude"), ("direction", "input")))] == 12000
    assert abs(metrics_before[("outrider_llm_cost_usd_total", (("namespace", "default"), ("target", "acme/web"), ("model", "claude")))] - 0.156) < 1e-9
    assert metrics_before[("outrider_run_duration_seconds_bucket", (("namespace", "default"), ("target", "acme/web"), ("le", "30")))] == 0
    assert metrics_before[("outrider_run_duration_seconds_bucket", (("namespace", "default"), ("target", "acme/web"), ("le", "60")))] == 3
    first.stop()

    second = start_server(config)
    assert second.client.get("/v1/events", params={"limit": 1000}).json() == events_before
    assert second.client.get("/v1/runs").json() == runs_before
    metrics_after = {(name, tuple(labels.items())): second.registry.get_sample_value(name, labels) for name, labels in METRICS}
    assert metrics_after == metrics_before
    retry = second.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
    assert counts(retry) == {"accepted": 0, "duplicates": len(batch)}  # idempotency survives the restart
    new = second.client.post("/v1/events", json=support.event("run.created", "after-restart"))
    assert counts(new) == {"accepted": 1, "duplicates": 0}
    last_seq = second.client.get("/v1/events", params={"run_id": "after-restart"}).json()["items"][0]["seq"]
    assert last_seq > events_before["items"][-1]["seq"]


def test_metrics_endpoint_text_format(api: RunningServer) -> None:
    api.client.post("/v1/events", content=json.dumps(support.lifecycle("m-1")), headers=support.BATCH)
    text = api.anonymous.get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    for name in (
        "outrider_store_up 1.0",
        'outrider_events_received_total{type="run.created"} 1.0',
        'outrider_events_received_total{type="autonomy.changed"} 0.0',
        'outrider_events_rejected_total{reason="malformed_json"} 0.0',
        'outrider_runs_total{namespace="default",status="succeeded",target="acme/web"} 1.0',
        'outrider_run_duration_seconds_bucket{le="+Inf",namespace="default",target="acme/web"} 1.0',
        'outrider_prs_created_total{namespace="default",target="acme/web"} 1.0',
        "outrider_ingest_duration_seconds_count 1.0",
        "process_cpu_seconds_total",
    ):
        assert name in body, name
    assert "m-1" not in body  # no run ids in labels


def test_readyz_reports_a_broken_store(api: RunningServer) -> None:
    assert api.anonymous.get("/readyz").json() == {"ready": True, "store": api.app.state.store.dialect, "detail": None}
    api.app.state.store.close()  # the writer stops: nothing could be committed any more
    response = api.anonymous.get("/readyz")
    assert response.status_code == 503 and response.json()["ready"] is False
    ingest = api.client.post("/v1/events", json=support.event("run.created"))
    assert ingest.status_code == 503 and ingest.json()["error"] == "store_unavailable"


def test_readyz_names_the_dependency_without_internal_text(api: RunningServer) -> None:
    """Readiness is unauthenticated: it says which dependency failed, and the database's own error text (paths,
    hosts, SQL) stays in the log."""
    the_store = api.app.state.store
    working, the_store.engine = the_store.engine, sa.create_engine("sqlite:////nonexistent-dir/secret-path.db")
    try:
        body = api.anonymous.get("/readyz").json()
    finally:
        the_store.engine = working
    assert body["ready"] is False and body["detail"] == "database unreachable"
    assert "secret-path" not in str(body)


def test_sqlite_files_are_private(make_sqlite_settings: Callable[..., settings.Settings],
                                  start_server: Callable[[settings.Settings], RunningServer]) -> None:
    """The database and its WAL hold every log line and traceback: owner-only (0600), whatever the umask."""
    api = start_server(make_sqlite_settings())
    path = Path(api.app.state.store.engine.url.database)
    assert api.client.post("/v1/events", json=support.event("run.created")).status_code == 202
    for name in (path, path.with_name(path.name + "-wal")):
        assert name.exists() and name.stat().st_mode & 0o777 == 0o600, oct(name.stat().st_mode)
