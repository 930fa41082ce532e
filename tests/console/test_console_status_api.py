"""``GET /v1/status``, ``/v1/targets``, ``/v1/autonomy/status`` and the status metrics on a real control plane."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from outrider.control_plane import schemas
from outrider.control_plane.store.engine import projections_file
from tests.console import console_support as support


def test_status_routes_need_a_token(server: support.Server) -> None:
    import httpx

    with httpx.Client(base_url=server.url) as anonymous:
        for path in ("/v1/status", "/v1/targets", "/v1/autonomy/status"):
            response = anonymous.get(path)
            assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_status_follows_the_operator_events(server: support.Server) -> None:
    registry = server.app.state.metrics.registry
    empty = schemas.SystemStatus.model_validate(server.client.get("/v1/status").json())
    assert empty.state == schemas.SystemState.ERROR and empty.reason == "No operator heartbeat yet."
    assert registry.get_sample_value("outrider_system_state", {"state": "error"}) == 1
    assert registry.get_sample_value("outrider_operator_heartbeat_age_seconds") is None
    assert server.client.get("/v1/targets").json() == []
    assert server.client.get("/v1/autonomy/status").json()["enabled"] is None

    server.post(support.heartbeat(period=30), support.target_status("repo-a", open_prs=2, max_open_prs=2,
                                                                     health="Blocked", health_reason="MaxOpenPRs"))
    blocked = schemas.SystemStatus.model_validate(server.client.get("/v1/status").json())
    assert blocked.state == schemas.SystemState.BLOCKED and blocked.blocked_by == [schemas.BlockedBy.MAX_OPEN_PRS]
    assert (blocked.open_prs, blocked.max_open_prs) == (2, 2)
    assert registry.get_sample_value("outrider_system_state", {"state": "blocked"}) == 1
    assert registry.get_sample_value("outrider_system_state", {"state": "error"}) == 0
    assert registry.get_sample_value("outrider_system_blocked", {"cause": "max_open_prs"}) == 1
    assert registry.get_sample_value("outrider_system_blocked", {"cause": "circuit_breaker"}) == 0
    age = registry.get_sample_value("outrider_operator_heartbeat_age_seconds")
    assert age is not None and 0 <= age < 30

    # The latest target.status per target wins; a later autonomy.changed overrides the older heartbeat.
    server.post(
        support.target_status("repo-a", open_prs=1, max_open_prs=2, active_runs=1),
        support.event("autonomy.changed", source="/operator", data={"enabled": False, "reason": "incident"},
                      at=datetime.now(UTC) + timedelta(seconds=1)),
    )
    paused = schemas.SystemStatus.model_validate(server.client.get("/v1/status").json())
    assert paused.blocked_by == [schemas.BlockedBy.AUTONOMY_PAUSED]
    assert "Autonomy paused" in paused.reason and "incident" in paused.reason
    autonomy = schemas.AutonomyStatus.model_validate(server.client.get("/v1/autonomy/status").json())
    assert autonomy.enabled is False and autonomy.source == "autonomy.changed" and autonomy.reason == "incident"
    targets = [schemas.TargetState.model_validate(t) for t in server.client.get("/v1/targets").json()]
    assert [(t.target, t.open_prs, t.active_runs, t.blocked_by) for t in targets] == [("repo-a", 1, 1, None)]


def test_unreadable_store_is_an_error_state_not_a_crash(server: support.Server) -> None:
    server.post(support.heartbeat())
    database = projections_file(server.app.state.settings.sqlite_path())  # where the per-event index lives
    with sqlite3.connect(database) as conn:
        conn.execute("ALTER TABLE events RENAME TO events_elsewhere")
    try:
        response = server.client.get("/v1/status")
        assert response.status_code == 200
        broken = schemas.SystemStatus.model_validate(response.json())
        assert broken.state == schemas.SystemState.ERROR and broken.store.reachable is False
        assert broken.reason.startswith("The store is unreachable")
        assert broken.targets is None and broken.open_prs is None
        assert server.client.get("/v1/targets").json()["error"] == "store_unavailable"
        assert server.client.get("/v1/autonomy/status").status_code == 503
        assert server.app.state.metrics.registry.get_sample_value("outrider_system_state", {"state": "error"}) == 1
    finally:
        with sqlite3.connect(database) as conn:
            conn.execute("ALTER TABLE events_elsewhere RENAME TO events")


def test_recent_activity_is_in_event_time_order_with_one_end_per_run(server: support.Server) -> None:
    """A back-filled success from 3 h ago takes its place in time instead of topping the feed; a run whose end the
    worker and the operator both reported appears once, with the first report."""
    now = datetime.now(UTC)
    server.post(support.event("run.created", runid="fresh", target="docs-site", at=now - timedelta(minutes=1)))
    server.post(support.event("run.failed", runid="twice", target="docs-site", at=now - timedelta(minutes=5),
                              data={"error_type": "PathViolation", "message": "wrote outside its workspace"}))
    server.post(support.event("run.failed", runid="twice", target="docs-site", at=now - timedelta(minutes=4),
                              source="/outrider/operator", data={"error_type": "BackoffLimitExceeded"}))
    server.post(support.event("run.succeeded", runid="backfilled", target="docs-site", at=now - timedelta(hours=3)))
    status = schemas.SystemStatus.model_validate(server.client.get("/v1/status").json())
    summaries = [item.summary for item in status.recent_activity]
    assert summaries[0] == "Run fresh created" and summaries[-1] == "Run backfilled succeeded"
    assert [s for s in summaries if "twice" in s] == ["Run twice failed (PathViolation)"]


def test_target_counts_follow_each_targets_health(server: support.Server) -> None:
    """Autonomy paused: every Target's health is Paused, a tripped breaker included; the counts say the same."""
    server.post(support.heartbeat(enabled=False),
                support.target_status("a", health="Paused", health_reason="AutonomyPaused"),
                support.target_status("b", health="Paused", health_reason="AutonomyPaused"),
                support.target_status("c", health="Paused", health_reason="AutonomyPaused", breaker_state="Open", consecutive_failures=2))
    status = schemas.SystemStatus.model_validate(server.client.get("/v1/status").json())
    assert status.targets is not None
    assert (status.targets.active, status.targets.blocked, status.targets.paused) == (0, 0, 3)
    assert {t["health"] for t in server.client.get("/v1/targets").json()} == {"Paused"}
