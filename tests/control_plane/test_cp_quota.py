"""Storage quota per namespace (quota.py): one tenant's agents cannot fill the shared volume; the others, the
operator's events and what was already stored are untouched; the usage the quota reads is what the log holds,
through projection and retention sweeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from outrider.control_plane import settings, tables
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

OPERATOR = "operator-token-for-quota-tests-0123456"
QUOTA = 6000


def _key(server: RunningServer, role: str, namespace: str) -> httpx.Client:
    secret = server.client.post("/v1/keys", json={"role": role, "namespaces": [namespace]}).json()["secret"]
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def _line(namespace: str, n: int, at: datetime | None = None) -> dict[str, Any]:
    event = support.event("run.log", "quota-run", data={"level": "info", "message": "x" * 1000}, id=f"{namespace}-{n}")
    if at is not None:
        event["time"] = at.isoformat()
    return {**event, "namespace": namespace}


def _samples(server: RunningServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = server.anonymous.get("/metrics").text
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}


def test_a_namespace_over_its_quota_refuses_its_agents_events_with_507_and_nothing_else(
        make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_settings(namespace_quota_bytes=QUOTA, operator_tokens=OPERATOR))
    team_a, team_b = _key(server, "ingest", "team-a"), _key(server, "ingest", "team-b")
    deadline = time.monotonic() + 30
    sent = 0
    while True:  # usage is counted as the projection covers the events: keep writing until refused
        answer = team_a.post("/v1/events", json=_line("team-a", sent))
        if answer.status_code == 507:
            break
        assert answer.status_code == 202, answer.text
        sent += 1
        assert time.monotonic() < deadline, "the quota never refused"
        time.sleep(0.05)
    assert sent >= QUOTA // 1200  # nothing refused before the namespace held about its quota
    body = answer.json()
    assert body["error"] == "quota_exceeded" and "team-a" in body["message"] and str(QUOTA) in body["message"]
    assert int(answer.headers["Retry-After"]) > 0
    assert team_b.post("/v1/events", json=_line("team-b", 0)).status_code == 202  # another tenant is not held up
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=30) as operator:
        ended = operator.post("/v1/events", json={**support.event("run.failed", "quota-run", data={"message": "over quota"}),
                                                  "namespace": "team-a"})
        assert ended.status_code == 202  # the operator's record of how a run ended always lands
    server.caught_up()
    stored = _samples(server, "outrider_namespace_stored_bytes")
    assert stored[(("namespace", "team-a"),)] >= QUOTA and stored[(("namespace", "team-b"),)] < QUOTA
    assert _samples(server, "outrider_namespace_quota_bytes") == {(): QUOTA}
    assert _samples(server, "outrider_events_rejected_total")[(("reason", "quota_exceeded"),)] == 1
    lines = server.client.get("/v1/runs/quota-run/logs", params={"namespace": "team-a", "limit": 1000}).json()["items"]
    assert len(lines) == sent  # everything accepted before the refusal is kept


def test_namespace_usage_is_what_the_log_holds_through_projection_and_sweeps(
        make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_settings(retention_days=1, retention_sweep_interval_seconds=0.2))
    old = datetime.now(UTC) - timedelta(days=10)
    batch = [_line("team-a", n, old) for n in range(5)] + [_line("team-a", 5 + n, datetime.now(UTC)) for n in range(3)] + [_line("team-b", 0, old)]
    assert server.client.post("/v1/events", json=batch).status_code == 202
    store_ = server.app.state.store
    deadline = time.monotonic() + 20
    while store_.namespace_usage().get("team-b", (1, 1))[0] != 0:  # the sweep took team-b's only (old) event
        assert time.monotonic() < deadline, f"the sweep did not delete the old events: {store_.namespace_usage()}"
        time.sleep(0.1)
    e = tables.events
    with store_.reading() as conn:
        held = {namespace: (count, int(size)) for namespace, count, size in conn.execute(
            sa.select(e.c.namespace, sa.func.count(), sa.func.sum(sa.literal_column(store_.sql.body_bytes))).group_by(e.c.namespace))}
    assert held["team-a"][0] == 3
    assert store_.namespace_usage() == {**held, "team-b": (0, 0)}
    assert _samples(server, "outrider_namespace_stored_events")[(("namespace", "team-a"),)] == 3
