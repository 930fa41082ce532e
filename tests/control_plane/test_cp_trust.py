"""The trust boundary on a real control plane: each attack from issue #13, tried with a worker's credential,
now gets 401/403/422 and stores nothing, while the legitimate path (the operator's own key, an admin) works.
Keys: created, listed without secrets, revoked at once, expired; the audit log records who did what."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from outrider.control_plane import settings, tables
from tests.conftest import counts
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

OPERATOR_TOKEN = "operator-token-for-tests-0123456789"


@pytest.fixture
def server(make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> RunningServer:
    return start_server(make_settings(operator_tokens=OPERATOR_TOKEN))


def key(server: RunningServer, role: str, **bounds: Any) -> httpx.Client:
    """A client holding a new key of ``role`` (created by the admin)."""
    response = server.client.post("/v1/keys", json={"role": role, **bounds})
    assert response.status_code == 201, response.text
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {response.json()['secret']}"}, timeout=30)


def as_operator(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)


def heartbeat(seconds: float = 30, at: datetime | None = None) -> dict[str, Any]:
    event = support.event("operator.heartbeat", None, target=None, source="/outrider/operator",
                          data={"autonomy_enabled": False, "autonomy_mode": "drain", "heartbeat_seconds": seconds})
    if at is not None:
        event["time"] = at.isoformat()
    return event


def stored_events(server: RunningServer, **params: str) -> list[dict[str, Any]]:
    return [item["event"] for item in server.client.get("/v1/events", params=params).json()["items"]]


def test_a_worker_cannot_hide_an_emergency_stop(server: RunningServer) -> None:
    """autonomy.changed dated 9999 from a worker's key: 403; from the operator's own key still refused (422),
    because a control event far in the future would stay "newest" forever."""
    operator = as_operator(server)
    assert operator.post("/v1/events", json=support.event(
        "autonomy.changed", None, target=None, source="/outrider/operator", data={"enabled": False, "reason": "emergency stop"},
        at=0)).status_code == 202
    forged = support.event("autonomy.changed", None, target=None, source="/workers/evil",
                           data={"enabled": True, "reason": "all good"})
    forged["time"] = "8999-12-31T23:59:59Z"
    worker = key(server, "ingest")
    refused = worker.post("/v1/events", json=forged)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "speaks for the operator" in refused.json()["message"]
    far = operator.post("/v1/events", json={**forged, "id": "far-future", "source": "/outrider/operator"})
    assert far.status_code == 422 and far.json()["detail"][0]["field"] == "time"
    assert [e["data"]["enabled"] for e in stored_events(server, type="autonomy.changed")] == [False]
    assert server.client.get("/v1/autonomy/status").json()["enabled"] is False


def test_a_worker_cannot_fake_the_operators_heartbeat(server: RunningServer) -> None:
    worker = key(server, "ingest")
    assert worker.post("/v1/events", json=heartbeat(100000)).status_code in (403, 422)
    assert worker.post("/v1/events", json=heartbeat(30)).status_code == 403
    assert stored_events(server, type="operator.heartbeat") == []
    assert server.client.get("/v1/status").json()["operator"]["last_heartbeat_at"] is None
    too_long = as_operator(server).post("/v1/events", json=heartbeat(100000))
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["field"] == "data.heartbeat_seconds"
    assert as_operator(server).post("/v1/events", json=heartbeat(30)).status_code == 202


def test_a_bound_key_cannot_write_for_another_tenant_or_target(server: RunningServer) -> None:
    """A team-a key for target web cannot bill team-b's run, fail it, or write for another target."""
    admin = server.client
    assert admin.post("/v1/events", json={**support.event("run.succeeded", "web-1", target="web"), "namespace": "team-b"}).status_code == 202
    team_a = key(server, "ingest", namespaces=["team-a"], targets=["web"])
    bill = {**support.event("run.llm_usage", "web-1", target="web", data={
        "provider": "x", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 1000000}), "namespace": "team-b"}
    fail = {**support.event("run.failed", "web-1", target="web", data={"message": "sabotage"}), "namespace": "team-b"}
    other_target = support.event("run.failed", "api-1", target="api")
    for attack in (bill, fail, other_target):
        response = team_a.post("/v1/events", json=attack)
        assert response.status_code == 403, response.text
        assert response.json()["detail"][0]["index"] == 0
    assert [e["type"] for e in stored_events(server)] == ["run.succeeded"]
    # Its own tenant and target: fine, and the namespace is filled in from the key.
    assert team_a.post("/v1/events", json=support.event("run.created", "web-2", target="web")).status_code == 202
    assert stored_events(server, run_id="web-2")[0]["namespace"] == "team-a"


def test_the_operators_source_and_ids_cannot_be_squatted(server: RunningServer) -> None:
    """Pre-posting an event with the operator's source and deterministic id would make the real one a duplicate."""
    squat = support.event("target.breaker.tripped", None, target="web", source="/outrider/operator", id="trip-web-1")
    assert key(server, "ingest").post("/v1/events", json=squat).status_code == 403
    lifecycle = support.event("run.succeeded", "x-1", source="/outrider/operator", id="op-x-1")
    assert key(server, "ingest").post("/v1/events", json=lifecycle).status_code == 403
    real = as_operator(server).post("/v1/events", json=squat)
    assert real.status_code == 202 and counts(real) == {"accepted": 1, "duplicates": 0}


def test_writers_cannot_read_and_readers_cannot_write(server: RunningServer) -> None:
    worker = key(server, "ingest")
    for path in ("/v1/runs", "/v1/events", "/v1/runs/x/logs", "/v1/status", "/v1/analytics/models", "/v1/budgets",
                 "/v1/projection"):
        response = worker.get(path)
        assert response.status_code == 403 and "may not read" in response.json()["message"], path
    reader = key(server, "read")
    response = reader.post("/v1/events", json=support.event("run.created", "r-1"))
    assert response.status_code == 403 and "may not write" in response.json()["message"]
    assert reader.get("/v1/runs").status_code == 200
    assert stored_events(server) == []
    for client in (worker, reader, as_operator(server)):
        assert client.get("/v1/keys").status_code == 403
        assert client.get("/v1/audit").status_code == 403


def test_keys_are_listed_without_secrets_and_revoked_at_once(server: RunningServer) -> None:
    created = server.client.post("/v1/keys", json={"role": "ingest", "name": "ci", "namespaces": ["team-a"]}).json()
    assert created["secret"].startswith("otk_") and created["role"] == "ingest" and created["namespaces"] == ["team-a"]
    listed = server.client.get("/v1/keys").json()
    assert [k["id"] for k in listed] == [created["id"]] and "secret" not in listed[0]
    assert created["secret"] not in str(server.app.state.store.engine.connect().execute(sa.select(tables.api_keys)).all())
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created['secret']}"}, timeout=30)
    assert client.post("/v1/events", json=support.event("run.created", "k-1")).status_code == 202
    assert server.client.delete(f"/v1/keys/{created['id']}").status_code == 200
    after = client.post("/v1/events", json=support.event("run.created", "k-2"))
    assert after.status_code == 401 and after.json()["error"] == "unauthorized"
    assert server.client.get("/v1/keys").json()[0]["revoked_at"] is not None
    assert server.client.delete("/v1/keys/nope").status_code == 404
    wrong = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created['secret']}x"}, timeout=30)
    assert wrong.get("/v1/runs").status_code == 401


def test_an_expired_key_is_refused(server: RunningServer) -> None:
    created = server.client.post("/v1/keys", json={"role": "read", "expires_in_seconds": 3600}).json()
    with server.app.state.store.engine.begin() as conn:
        conn.execute(sa.update(tables.api_keys).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    server.app.state.keys._cache.clear()  # as after key_cache_seconds
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created['secret']}"}, timeout=30)
    assert client.get("/v1/runs").status_code == 401


def test_bad_key_requests_are_422(server: RunningServer) -> None:
    for body in ({"role": "run"}, {"role": "ingest", "namespaces": ["Not_A_Label"]}, {"role": "ingest", "extra": 1},
                 {"role": "read", "expires_in_seconds": 0}):
        assert server.client.post("/v1/keys", json=body).status_code == 422, body


def test_the_audit_log_says_who_did_what(server: RunningServer) -> None:
    worker_key = server.client.post("/v1/keys", json={"role": "ingest", "name": "worker"}).json()
    worker = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {worker_key['secret']}"}, timeout=30)
    worker.post("/v1/events", json=heartbeat())
    as_operator(server).post("/v1/events", json=support.event(
        "autonomy.changed", None, target=None, source="/outrider/operator", data={"enabled": False}))
    server.client.delete(f"/v1/keys/{worker_key['id']}")
    entries = server.client.get("/v1/audit").json()["items"]
    actions = [(e["action"], e["actor"], e["outcome"]) for e in entries]
    assert ("key.created", "token", "ok") in actions
    assert ("write.refused", worker_key["id"], "refused") in actions
    assert ("event.control", "operator-token", "ok") in actions
    assert ("key.revoked", "token", "ok") in actions
    refused = next(e for e in entries if e["action"] == "write.refused")
    assert refused["role"] == "ingest" and "speaks for the operator" in refused["detail"]["problems"][0]["message"]
    page = server.client.get("/v1/audit", params={"action": "key.created", "limit": 1}).json()
    assert len(page["items"]) == 1 and page["items"][0]["object"] == worker_key["id"]


def test_only_the_operator_may_say_a_target_was_deleted(server: RunningServer) -> None:
    """target.deleted drops a Target from the status and /metrics: an agent's key must not be able to hide one."""
    reported = support.event("target.status", None, target="web", source="/outrider/operator", data={
        "health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0, "active_runs": 0,
        "pending_runs": 0, "max_open_prs": 1, "max_concurrent_runs": 1})
    assert as_operator(server).post("/v1/events", json=reported).status_code == 202
    deleted = support.event("target.deleted", None, target="web", source="/workers/pod-1")
    for role in ("ingest", "read"):
        assert key(server, role).post("/v1/events", json=deleted).status_code == 403
    server.caught_up()
    assert [t["target"] for t in server.client.get("/v1/targets").json()] == ["web"]
    assert stored_events(server, type="target.deleted") == []


def test_a_key_bounded_to_one_target_summarizes_only_that_target(server: RunningServer) -> None:
    for target in ("web", "api"):
        assert server.client.post("/v1/events", json=support.event("run.created", f"{target}-1", target=target)).status_code == 202
    server.caught_up()
    bounded = key(server, "read", targets=["web"])
    assert bounded.get("/v1/runs/summary", params={"window": "3650d"}).json()["total"] == 1
    assert bounded.get("/v1/runs/summary", params={"window": "3650d", "target": "web"}).json()["total"] == 1
    assert bounded.get("/v1/runs/summary", params={"window": "3650d", "target": "api"}).json()["total"] == 0  # not widened


def test_one_event_that_speaks_for_the_operator_refuses_a_whole_batch(server: RunningServer) -> None:
    """An unbounded key's batch is checked per distinct type and source (``principals.authorize``): an ordinary
    batch with one event from the operator's source, one control type and one operator decision among many
    ordinary ones is refused as a whole, each named by its index, and nothing of it is stored."""
    worker = key(server, "ingest")
    batch = [support.event("run.log", f"b-{n}", data={"level": "info", "message": "m"}) for n in range(8)]
    batch[2] = support.event("run.log", "b-2", source="/outrider/operator/x", data={"level": "info", "message": "m"})
    batch[4] = support.event("autonomy.changed", None, target=None, data={"enabled": True, "reason": "r"})
    batch[6] = support.event("run.admitted", "b-6")
    refused = worker.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
    assert refused.status_code == 403, refused.text
    assert [problem["index"] for problem in refused.json()["detail"]] == [2, 4, 6]
    assert stored_events(server) == []
    ordinary = [event for index, event in enumerate(batch) if index not in (2, 4, 6)]
    assert counts(worker.post("/v1/events", content=json.dumps(ordinary), headers=support.BATCH)) == {"accepted": 5, "duplicates": 0}
