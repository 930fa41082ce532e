"""The system-status rules of outrider.control_plane.status.compute, one case per rule (pure: no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from outrider.common import events
from outrider.control_plane import schemas, status

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_seq = iter(range(1, 10_000))


def stored(kind: str, data: dict[str, Any], *, at: datetime = NOW, target: str | None = None, runid: str | None = None) -> schemas.StoredEvent:
    seq = next(_seq)
    event = events.CloudEvent(
        specversion="1.0", id=f"e{seq}", source="/test", type=kind, time=at, target=target, runid=runid, data=data
    )
    return schemas.StoredEvent(seq=seq, received_at=at, event=event)


def heartbeat(age: float = 5, period: float = 10, enabled: bool = True, **extra: Any) -> schemas.StoredEvent:
    return stored(
        "operator.heartbeat",
        {"autonomy_enabled": enabled, "heartbeat_seconds": period, **extra},
        at=NOW - timedelta(seconds=age),
    )


def target(name: str, **overrides: Any) -> schemas.StoredEvent:
    data: dict[str, Any] = {
        "health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0,
        "active_runs": 0, "pending_runs": 0, "open_prs": 0, "max_open_prs": 2, "max_concurrent_runs": 1,
    }
    data.update(overrides)
    return stored("target.status", data, target=name, at=NOW - timedelta(seconds=30))


def test_no_heartbeat_is_error_with_that_reason() -> None:
    result = status.compute(status.Inputs(), now=NOW)
    assert result.state == schemas.SystemState.ERROR
    assert result.reason == "No operator heartbeat yet."
    assert result.operator.stale is True
    assert result.targets is not None and result.targets.total == 0
    assert result.open_prs is None and result.pending_runs is None and result.last_execution_at is None


def test_stale_heartbeat_is_error_after_three_periods() -> None:
    fresh = status.compute(status.Inputs(heartbeat=heartbeat(age=29, period=10)), now=NOW)
    stale = status.compute(status.Inputs(heartbeat=heartbeat(age=31, period=10)), now=NOW)
    assert fresh.state == schemas.SystemState.IDLE
    assert stale.state == schemas.SystemState.ERROR
    assert "stale" in stale.reason and "31s" in stale.reason
    assert stale.operator.age_seconds == 31


def test_store_unreachable_is_error_and_claims_nothing() -> None:
    result = status.compute(status.Inputs(store_error="database is locked"), now=NOW)
    assert result.state == schemas.SystemState.ERROR
    assert result.store.reachable is False
    assert result.targets is None and result.operator.stale is None and result.autonomy.enabled is None


def test_idle_when_nothing_active_or_waiting() -> None:
    result = status.compute(status.Inputs(heartbeat=heartbeat(), target_statuses=[target("a")]), now=NOW)
    assert result.state == schemas.SystemState.IDLE
    assert result.targets == schemas.TargetCounts(total=1, active=1, blocked=0, paused=0)
    assert (result.open_prs, result.max_open_prs, result.pending_runs) == (0, 2, 0)


def test_healthy_with_active_runs() -> None:
    result = status.compute(
        status.Inputs(heartbeat=heartbeat(), target_statuses=[target("a", active_runs=1, pending_runs=3, open_prs=1)]),
        now=NOW,
    )
    assert result.state == schemas.SystemState.HEALTHY
    assert result.reason == "1 run active, 3 waiting for admission."
    assert (result.open_prs, result.max_open_prs, result.pending_runs, result.active_runs) == (1, 2, 3, 1)


def test_breaker_open_blocks_with_cooldown_countdown() -> None:
    cooldown = NOW + timedelta(minutes=30)
    result = status.compute(
        status.Inputs(
            heartbeat=heartbeat(),
            target_statuses=[
                target("a", health="Blocked", breaker_state="Open", consecutive_failures=2, trips=1,
                       cooldown_until=cooldown.isoformat(), pending_runs=3),
                target("b", active_runs=1),
            ],
        ),
        now=NOW,
    )
    assert result.state == schemas.SystemState.BLOCKED
    assert result.blocked_by == [schemas.BlockedBy.CIRCUIT_BREAKER]
    assert "Circuit breaker open on a after 2 consecutive failures; cooldown ends in 30m." in result.reason
    assert "cooldown" in result.action
    assert result.targets == schemas.TargetCounts(total=2, active=1, blocked=1, paused=0)
    states = status.target_states(
        [target("a", health="Blocked", breaker_state="Open", cooldown_until=cooldown.isoformat())], NOW
    )
    assert states[0].cooldown_remaining_seconds == 1800


def test_max_open_prs_blocks() -> None:
    result = status.compute(
        status.Inputs(heartbeat=heartbeat(), target_statuses=[target("a", health="Blocked", open_prs=2, max_open_prs=2)]),
        now=NOW,
    )
    assert result.blocked_by == [schemas.BlockedBy.MAX_OPEN_PRS]
    assert "Max open PRs reached on a (2/2)." in result.reason
    assert result.action == "Merge or close open PRs to resume execution."


def test_autonomy_paused_from_heartbeat_and_newer_change_event() -> None:
    paused = status.compute(
        status.Inputs(heartbeat=heartbeat(enabled=False, autonomy_mode="drain", autonomy_reason="incident 42")),
        now=NOW,
    )
    assert paused.state == schemas.SystemState.BLOCKED
    assert paused.blocked_by == [schemas.BlockedBy.AUTONOMY_PAUSED]
    assert "Emergency stop" in paused.reason and "incident 42" in paused.reason
    assert paused.autonomy.mode == "drain"

    change = stored("autonomy.changed", {"enabled": True, "reason": "all clear"}, at=NOW - timedelta(seconds=1))
    resumed = status.compute(
        status.Inputs(heartbeat=heartbeat(enabled=False, autonomy_mode="drain"), autonomy_changed=change), now=NOW
    )
    assert resumed.autonomy.enabled is True and resumed.autonomy.source == "autonomy.changed"
    assert resumed.autonomy.mode is None  # the heartbeat's mode belonged to the paused state: unknown, not guessed
    assert resumed.state == schemas.SystemState.IDLE


def test_paused_target_counts_as_paused_not_active() -> None:
    result = status.compute(
        status.Inputs(heartbeat=heartbeat(), target_statuses=[target("a", health="Paused", paused=True)]), now=NOW
    )
    assert result.targets == schemas.TargetCounts(total=1, active=0, blocked=0, paused=1)


def test_activity_summaries_and_last_execution() -> None:
    recent = [
        stored("pr.created", {"number": 722, "url": "https://x/pr/722"}, runid="r1", target="a", at=NOW - timedelta(minutes=3)),
        stored("run.failed", {"error_type": "TimeoutError"}, runid="r2", target="a", at=NOW - timedelta(minutes=1)),
    ]
    started = NOW - timedelta(minutes=2)
    result = status.compute(status.Inputs(heartbeat=heartbeat(), recent=recent, last_started_at=started), now=NOW)
    assert [(a.severity, a.summary) for a in result.recent_activity] == [
        ("error", "Run r2 failed (TimeoutError)"),
        ("ok", "PR #722 created by run r1"),
    ]
    assert result.last_execution_at == started


def test_invalid_target_status_data_is_ignored_not_guessed() -> None:
    bad = stored("target.status", {"health": "Healthy"}, target="a")
    result = status.compute(status.Inputs(heartbeat=heartbeat(), target_statuses=[bad]), now=NOW)
    assert result.targets is not None and result.targets.total == 0 and result.open_prs is None


def test_unknown_open_prs_stay_unknown() -> None:
    result = status.compute(
        status.Inputs(heartbeat=heartbeat(), target_statuses=[target("a", open_prs_known=False), target("b", open_prs=1)]),
        now=NOW,
    )
    assert (result.open_prs, result.max_open_prs) == (1, 2)  # only b's figures are facts
    states = status.target_states([target("a", open_prs_known=False)], NOW)
    assert states[0].open_prs is None
    alone = status.compute(status.Inputs(heartbeat=heartbeat(), target_statuses=[target("a", open_prs_known=False)]), now=NOW)
    assert alone.open_prs is None and alone.max_open_prs is None


def test_null_open_prs_are_unknown_and_old_placeholder_events_read_as_null() -> None:
    assert status.target_states([target("a", open_prs=None)], NOW)[0].open_prs is None
    old = events.TargetStatusData.model_validate({**target("a").event.data, "open_prs": 0, "open_prs_known": False})
    assert old.open_prs is None
    assert events.TargetStatusData.model_validate({**target("a").event.data, "open_prs": 3}).open_prs == 3


def test_a_target_blocked_by_its_budget_blocks_the_system_with_cause_budget() -> None:
    held = target("a", health="Blocked", health_reason="BudgetExceeded", pending_runs=2)
    assert status.target_states([held], NOW)[0].blocked_by == schemas.BlockedBy.BUDGET
    result = status.compute(status.Inputs(heartbeat=heartbeat(), target_statuses=[held]), now=NOW)
    assert result.state == schemas.SystemState.BLOCKED and result.blocked_by == [schemas.BlockedBy.BUDGET]
    unknown = target("a", health="Blocked", health_reason="BudgetUnknown", pending_runs=1)
    assert "cannot be read" in (status.compute(status.Inputs(heartbeat=heartbeat(), target_statuses=[unknown]), now=NOW).reason)


def test_blocked_without_figures_uses_the_operator_reason() -> None:
    prs = status.target_states([target("a", health="Blocked", health_reason="MaxOpenPRs", open_prs_known=False)], NOW)
    assert prs[0].blocked_by == schemas.BlockedBy.MAX_OPEN_PRS
