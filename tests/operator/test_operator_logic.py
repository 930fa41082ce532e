"""Unit tests of the operator's pure rules: autonomy parsing, the breaker, admission and health. No I/O, no sleeps."""

from __future__ import annotations

import datetime as dt

import pytest

from outrider.common import k8s
from outrider.operator import admission, autonomy, breaker, health

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ON = autonomy.parse({"data": {"enabled": "true"}})


def cm(**data):
    return {"metadata": {"name": "outrider-autonomy"}, "data": data}


# --- autonomy ------------------------------------------------------------------------------------------
def test_enabled_is_case_insensitive_and_trimmed():
    assert autonomy.parse(cm(enabled=" True ")).enabled
    assert autonomy.parse(cm(enabled="FALSE")).reason == k8s.REASON_AUTONOMY_PAUSED


def test_enabled_configmap():
    a = autonomy.parse(cm(enabled="true", reason="all good"))
    assert a.enabled and a.mode == "hold" and a.reason == "" and not a.draining


def test_disabled_configmap_holds_with_its_reason():
    a = autonomy.parse(cm(enabled="false", reason="incident 42"))
    assert not a.enabled and a.reason == k8s.REASON_AUTONOMY_PAUSED and a.message == "incident 42"


def test_drain_mode():
    assert autonomy.parse(cm(enabled="false", mode="drain")).draining
    assert not autonomy.parse(cm(enabled="true", mode="drain")).draining  # drain only matters while disabled


def test_missing_configmap_fails_closed():
    a = autonomy.parse(None, namespace="ops")
    assert not a.enabled and a.reason == k8s.REASON_CONFIG_MISSING and "ops/outrider-autonomy" in a.message


@pytest.mark.parametrize(
    "obj",
    [cm(), cm(enabled="maybe"), cm(enabled="yes"), cm(enabled="1"), cm(enabled="true", mode="explode"), {"data": "x"}, cm(enabled="")],
)
def test_invalid_configmap_fails_closed(obj):
    a = autonomy.parse(obj)
    assert not a.enabled and a.reason == k8s.REASON_CONFIG_INVALID and not a.draining


def test_configmap_without_data_is_invalid():
    assert autonomy.parse({"metadata": {}}).reason == k8s.REASON_CONFIG_INVALID


# --- breaker -------------------------------------------------------------------------------------------
def fail(b, run, now, threshold=2, cooldown=60):
    return breaker.record(b, succeeded=False, run=run, reason="BackoffLimitExceeded", now=now,
                          failure_threshold=threshold, cooldown_seconds=cooldown)


def succeed(b, run, now):
    return breaker.record(b, succeeded=True, run=run, reason=None, now=now, failure_threshold=2, cooldown_seconds=60)


def test_breaker_trips_at_the_threshold():
    b, t = fail(breaker.Breaker(), "r1", T0)
    assert b.state == "Closed" and b.consecutive_failures == 1 and not t.tripped
    b, t = fail(b, "r2", T0)
    assert b.state == "Open" and b.trips == 1 and t.tripped
    assert b.cooldown_until == T0 + dt.timedelta(seconds=60) and b.tripped_at == T0
    assert b.last_failure_run == "r2" and b.last_failure_reason == "BackoffLimitExceeded"
    assert breaker.allows(b, T0 + dt.timedelta(seconds=59)) == (False, False)


def test_success_while_closed_resets_the_count():
    b, _ = fail(breaker.Breaker(), "r1", T0)
    b, _ = succeed(b, "r2", T0)
    assert b.consecutive_failures == 0 and b.state == "Closed"
    b, t = fail(b, "r3", T0)
    assert b.state == "Closed" and not t.tripped


def test_half_open_admits_exactly_one_probe_and_success_closes():
    b, _ = fail(fail(breaker.Breaker(), "r1", T0)[0], "r2", T0)
    later = T0 + dt.timedelta(seconds=60)
    assert breaker.allows(b, later) == (True, True)
    b2, t = breaker.advance(b, later)
    assert b2.state == "HalfOpen" and t.half_opened
    b2 = breaker.admit_probe(b2, "r3")
    assert breaker.allows(b2, later) == (False, False)
    b3, t = succeed(b2, "r3", later)
    assert b3.state == "Closed" and b3.consecutive_failures == 0 and t.reset and b3.trips == 1
    assert b3.cooldown_until is None and b3.probe_run is None


def test_probe_failure_reopens_and_marks_reopened():
    b, _ = fail(fail(breaker.Breaker(), "r1", T0)[0], "r2", T0)
    later = T0 + dt.timedelta(seconds=61)
    b = breaker.admit_probe(breaker.advance(b, later)[0], "r3")
    b, t = fail(b, "r3", later)
    assert b.state == "Open" and b.trips == 2 and b.reopened and t.tripped
    assert b.cooldown_until == later + dt.timedelta(seconds=60)
    # ...and a later successful probe clears `reopened`.
    again = later + dt.timedelta(seconds=60)
    b = breaker.admit_probe(breaker.advance(b, again)[0], "r4")
    b, t = succeed(b, "r4", again)
    assert b.state == "Closed" and not b.reopened and t.reset


def test_a_straggler_does_not_close_a_half_open_breaker():
    b, _ = fail(fail(breaker.Breaker(), "r1", T0)[0], "r2", T0)
    later = T0 + dt.timedelta(seconds=60)
    b = breaker.admit_probe(breaker.advance(b, later)[0], "probe")
    b, t = succeed(b, "old-run", later)
    assert b.state == "HalfOpen" and b.probe_run == "probe" and not t.reset


def test_lost_probe_lets_another_through():
    b = breaker.Breaker(state="HalfOpen", probe_run="p")
    assert breaker.allows(breaker.probe_lost(b, "p"), T0) == (True, True)


def test_breaker_round_trips_through_status():
    b, _ = fail(fail(breaker.Breaker(), "r1", T0)[0], "r2", T0)
    status = breaker.to_status(b)
    assert status["state"] == "Open" and status["cooldownUntil"] == "2026-01-01T00:01:00Z"
    assert breaker.from_status(status) == b
    assert breaker.from_status(None) == breaker.Breaker()
    assert breaker.from_status({"state": "Bogus", "trips": -3}) == breaker.Breaker()


# --- admission -----------------------------------------------------------------------------------------
def cands(*names):
    return [admission.Candidate(n, T0 + dt.timedelta(seconds=i)) for i, n in enumerate(names)]


def decide(names=("a", "b"), **kw):
    kw.setdefault("autonomy", ON)
    kw.setdefault("target", admission.TargetLimits(max_concurrent_runs=1))
    kw.setdefault("breaker", breaker.Breaker())
    kw.setdefault("active", 0)
    kw.setdefault("now", T0)
    return {d.run: (d.admit, d.reason) for d in admission.decide(cands(*names), **kw)}


def test_oldest_first_up_to_the_concurrency_limit():
    assert decide(("a", "b", "c"), target=admission.TargetLimits(max_concurrent_runs=2)) == {
        "a": (True, "Admitted"), "b": (True, "Admitted"), "c": (False, "ConcurrencyLimit")}
    assert decide(active=1) == {"a": (False, "ConcurrencyLimit"), "b": (False, "ConcurrencyLimit")}


def test_order_ignores_input_order_and_breaks_ties_by_name():
    same = [admission.Candidate("z", T0), admission.Candidate("y", T0), admission.Candidate("x", T0 - dt.timedelta(1))]
    assert [c.name for c in admission.order(same)] == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"autonomy": autonomy.parse(cm(enabled="false"))}, "AutonomyPaused"),
        ({"autonomy": autonomy.parse(None)}, "ConfigMissing"),
        ({"autonomy": autonomy.parse(cm(enabled="perhaps"))}, "ConfigInvalid"),
        ({"target": None}, "TargetNotFound"),
        ({"target": admission.TargetLimits(paused=True)}, "TargetPaused"),
        ({"breaker": breaker.Breaker(state="Open", cooldown_until=T0 + dt.timedelta(seconds=5))}, "CircuitOpen"),
        ({"target": admission.TargetLimits(open_prs=2, max_open_prs=2)}, "MaxOpenPRs"),
        ({"active": 1}, "ConcurrencyLimit"),
    ],
)
def test_each_hold_reason(kw, reason):
    assert decide(**kw) == {"a": (False, reason), "b": (False, reason)}


def test_autonomy_wins_over_every_other_reason():
    assert decide(autonomy=autonomy.parse(None), target=None, active=9)["a"] == (False, "ConfigMissing")


def test_half_open_admits_one_probe_even_with_room_for_more():
    b = breaker.Breaker(state="Open", cooldown_until=T0, consecutive_failures=2, trips=1)
    out = admission.decide(cands("a", "b"), autonomy=ON, target=admission.TargetLimits(max_concurrent_runs=5),
                           breaker=b, active=0, now=T0)
    assert [(d.run, d.admit, d.reason, d.probe) for d in out] == [
        ("a", True, "ProbeAdmitted", True), ("b", False, "CircuitOpen", False)]
    assert "waiting for the probe Run a" in out[1].message


def test_unknown_open_prs_do_not_hold():
    assert decide(target=admission.TargetLimits(open_prs=None, max_open_prs=1))["a"] == (True, "Admitted")


# --- health --------------------------------------------------------------------------------------------
def assess(**kw):
    kw.setdefault("limits", admission.TargetLimits())
    kw.setdefault("autonomy", ON)
    kw.setdefault("breaker", breaker.Breaker())
    kw.setdefault("active", 0)
    kw.setdefault("pending", 0)
    h = health.assess(**kw)
    return h.health, h.reason


def test_health_rules_in_order():
    open_b = breaker.Breaker(state="Open", cooldown_until=T0, consecutive_failures=2)
    assert assess(limits=admission.TargetLimits(paused=True), breaker=open_b) == ("Paused", "TargetPaused")
    assert assess(autonomy=autonomy.parse(None), breaker=open_b) == ("Paused", "ConfigMissing")
    assert assess(breaker=breaker.Breaker(state="Open", cooldown_until=T0, reopened=True)) == ("Failed", "ProbeFailed")
    assert assess(breaker=open_b) == ("Blocked", "CircuitOpen")
    assert assess(limits=admission.TargetLimits(open_prs=3, max_open_prs=2)) == ("Blocked", "MaxOpenPRs")
    assert assess() == ("Idle", "NoRuns")
    assert assess(active=1) == ("Healthy", "RunsActive")
    assert assess(pending=1) == ("Healthy", "RunsActive")
    assert assess(breaker=breaker.Breaker(state="HalfOpen"), pending=1) == ("Healthy", "RunsActive")
