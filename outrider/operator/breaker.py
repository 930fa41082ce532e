"""The per-Target circuit breaker: stop admitting a Target's Runs after repeated failures, then probe.

States (docs/concepts/breaker.md): Closed admits; ``failureThreshold`` consecutive failed Runs open it
(``trips`` + 1, ``cooldownUntil`` = now + ``cooldownSeconds``); an Open breaker admits nothing until the
cooldown ends, when it becomes HalfOpen and admits exactly one probe Run; the probe's success closes it
(failures reset), its failure opens it again and marks it ``reopened`` (Target health Failed). A success
while Closed resets the count. The state is a plain value kept in ``Target.status.breaker`` so it
survives operator restarts; every function here is pure and takes ``now``, so tests fast-forward time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from outrider.common import k8s
from outrider.common.timefmt import format_time, parse_time


@dataclasses.dataclass(frozen=True)
class Breaker:
    state: str = k8s.BREAKER_CLOSED
    consecutive_failures: int = 0
    trips: int = 0
    tripped_at: dt.datetime | None = None
    cooldown_until: dt.datetime | None = None
    probe_run: str | None = None  # the half-open probe in flight
    reopened: bool = False  # the last trip came from a failed probe
    last_failure_run: str | None = None
    last_failure_reason: str | None = None
    last_failure_time: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Transition:
    """What changed, for Kubernetes Events and control-plane events."""

    tripped: bool = False  # Closed/HalfOpen -> Open
    reset: bool = False  # HalfOpen/Open -> Closed
    half_opened: bool = False  # Open -> HalfOpen


def from_status(status: dict[str, Any] | None) -> Breaker:
    """The breaker as stored in ``Target.status.breaker``; absent or damaged fields fall back to Closed/0."""
    raw = status or {}
    state = str(raw.get("state")) if raw.get("state") in k8s.BREAKER_STATES else k8s.BREAKER_CLOSED
    last = raw.get("lastFailure") or {}

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    cooldown_until = parse_time(raw.get("cooldownUntil"))
    if state == k8s.BREAKER_OPEN and cooldown_until is None:
        state = k8s.BREAKER_HALF_OPEN  # an Open breaker without a deadline would never close: probe instead
    return Breaker(
        state=state,
        consecutive_failures=count("consecutiveFailures"),
        trips=count("trips"),
        tripped_at=parse_time(raw.get("trippedAt")),
        cooldown_until=cooldown_until,
        probe_run=raw.get("probeRun") or None,
        reopened=bool(raw.get("reopened")),
        last_failure_run=last.get("run"),
        last_failure_reason=last.get("reason"),
        last_failure_time=parse_time(last.get("time")),
    )


def to_status(breaker: Breaker) -> dict[str, Any]:
    """The breaker for ``Target.status.breaker``. None values delete the field in a merge patch."""
    last = None
    if breaker.last_failure_run or breaker.last_failure_reason:
        last = {"run": breaker.last_failure_run, "reason": breaker.last_failure_reason,
                "time": format_time(breaker.last_failure_time)}
    return {
        "state": breaker.state,
        "consecutiveFailures": breaker.consecutive_failures,
        "trips": breaker.trips,
        "trippedAt": format_time(breaker.tripped_at),
        "cooldownUntil": format_time(breaker.cooldown_until),
        "probeRun": breaker.probe_run,
        "reopened": breaker.reopened,
        "lastFailure": last,
    }


def advance(breaker: Breaker, now: dt.datetime) -> tuple[Breaker, Transition]:
    """Open → HalfOpen once the cooldown has ended; otherwise unchanged."""
    if breaker.state == k8s.BREAKER_OPEN and breaker.cooldown_until is not None and now >= breaker.cooldown_until:
        return dataclasses.replace(breaker, state=k8s.BREAKER_HALF_OPEN, probe_run=None), Transition(half_opened=True)
    return breaker, Transition()


def allows(breaker: Breaker, now: dt.datetime) -> tuple[bool, bool]:
    """(may admit one Run now, that Run is the half-open probe)."""
    breaker, _ = advance(breaker, now)
    if breaker.state == k8s.BREAKER_CLOSED:
        return True, False
    if breaker.state == k8s.BREAKER_HALF_OPEN and not breaker.probe_run:
        return True, True
    return False, False


def admit_probe(breaker: Breaker, run: str) -> Breaker:
    """Record that ``run`` was admitted as the probe: no other Run passes until it finishes."""
    return dataclasses.replace(breaker, probe_run=run)


def record(
    breaker: Breaker,
    *,
    succeeded: bool,
    run: str,
    reason: str | None,
    now: dt.datetime,
    failure_threshold: int,
    cooldown_seconds: int,
) -> tuple[Breaker, Transition]:
    """Apply one finished Run's outcome."""
    breaker, _ = advance(breaker, now)
    is_probe = breaker.state == k8s.BREAKER_HALF_OPEN and breaker.probe_run == run
    if succeeded:
        if breaker.state == k8s.BREAKER_CLOSED:
            return dataclasses.replace(breaker, consecutive_failures=0), Transition()
        if is_probe:
            return dataclasses.replace(
                breaker, state=k8s.BREAKER_CLOSED, consecutive_failures=0, cooldown_until=None,
                probe_run=None, reopened=False,
            ), Transition(reset=True)
        return breaker, Transition()  # a straggler finishing while Open/HalfOpen proves nothing about the probe
    failed = dataclasses.replace(
        breaker,
        consecutive_failures=breaker.consecutive_failures + 1,
        last_failure_run=run,
        last_failure_reason=reason,
        last_failure_time=now,
    )
    cooldown = dt.timedelta(seconds=max(1, cooldown_seconds))
    if is_probe:
        return dataclasses.replace(
            failed, state=k8s.BREAKER_OPEN, trips=breaker.trips + 1, tripped_at=now,
            cooldown_until=now + cooldown, probe_run=None, reopened=True,
        ), Transition(tripped=True)
    if breaker.state == k8s.BREAKER_CLOSED and failed.consecutive_failures >= max(1, failure_threshold):
        return dataclasses.replace(
            failed, state=k8s.BREAKER_OPEN, trips=breaker.trips + 1, tripped_at=now,
            cooldown_until=now + cooldown, probe_run=None, reopened=False,
        ), Transition(tripped=True)
    return failed, Transition()


def probe_lost(breaker: Breaker, run: str) -> Breaker:
    """The probe Run vanished without an outcome (deleted, cancelled): let another probe through."""
    if breaker.state == k8s.BREAKER_HALF_OPEN and breaker.probe_run == run:
        return dataclasses.replace(breaker, probe_run=None)
    return breaker
