"""The one function that says what the whole system is doing: healthy, idle, blocked or error.

The console, the CLI (through ``GET /v1/status``) and the metrics all read :func:`compute`, so they can never
disagree. Its inputs are facts the control plane already stores: the operator's latest ``operator.heartbeat``,
the latest ``target.status`` of each Target, the latest ``autonomy.changed``, the latest ``run.started`` and the
most recent notable events. :func:`load` reads them from the store; :func:`compute` is pure (inputs and a clock in,
a :class:`~outrider.control_plane.schemas.SystemStatus` out), so every rule is testable without a server.

Rules (also in docs/console.md):

- ``error`` — the store cannot be read, or the operator's heartbeat is missing or older than 3 of its periods.
- ``blocked`` — autonomy is paused, or at least one Target is blocked (circuit breaker open or failed after a
  half-open probe; open PRs at the maximum). ``blocked_by`` lists every cause.
- ``healthy`` — runs are active or waiting for admission.
- ``idle`` — nothing running and nothing waiting.

Precedence is error > blocked > healthy > idle; ``blocked_by`` is filled in whatever the state.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from outrider.common import events, k8s
from outrider.control_plane import schemas, store, tables

#: A heartbeat older than this many announced periods means the operator is gone.
STALE_PERIODS = 3
#: How many events the dashboard's "recent activity" shows.
RECENT_LIMIT = 20
#: Event types worth showing as activity (heartbeats and target.status snapshots are state, not activity).
ACTIVITY_TYPES: tuple[str, ...] = (
    events.EventType.RUN_CREATED,
    events.EventType.RUN_ADMITTED,
    events.EventType.RUN_STARTED,
    events.EventType.RUN_RETRY,
    events.EventType.RUN_SUCCEEDED,
    events.EventType.RUN_FAILED,
    events.EventType.RUN_CANCELLED,
    events.EventType.PR_CREATED,
    events.EventType.PR_MERGED,
    events.EventType.TARGET_BREAKER_TRIPPED,
    events.EventType.TARGET_BREAKER_RESET,
    events.EventType.TARGET_DELETED,
    events.EventType.RUN_STALLED,
    events.EventType.RUN_REQUEUED,
    events.EventType.AUTONOMY_CHANGED,
)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Everything :func:`compute` needs, as read from the store (``store_error`` set when it could not be)."""

    heartbeat: schemas.StoredEvent | None = None
    autonomy_changed: schemas.StoredEvent | None = None
    target_statuses: list[schemas.StoredEvent] = dataclasses.field(default_factory=list)
    last_started_at: datetime | None = None
    #: The latest notable events by arrival; shown newest (event time) first.
    recent: list[schemas.StoredEvent] = dataclasses.field(default_factory=list)
    store_error: str | None = None


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for UTC columns; treat them as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def humanize_seconds(seconds: float) -> str:
    """'45s', '12m', '3h 5m', '2d 4h' — for sentences; the numbers stay exact in the JSON."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def target_state(stored: schemas.StoredEvent, now: datetime) -> schemas.TargetState | None:
    """One Target's state from its latest ``target.status`` event; None when the event's data is not valid."""
    event = stored.event
    if not event.target:
        return None
    try:
        data = events.TargetStatusData.model_validate(event.data)
    except ValidationError:
        return None
    # Null when nobody reports the Target's PRs (old events' "0 + open_prs_known: false" reads as null too).
    open_prs = data.open_prs
    blocked_by: schemas.BlockedBy | None = None
    if data.breaker_state == "Open" or data.health == "Failed":
        blocked_by = schemas.BlockedBy.CIRCUIT_BREAKER
    elif data.health == "Blocked" and open_prs is not None and data.max_open_prs > 0 and open_prs >= data.max_open_prs:
        blocked_by = schemas.BlockedBy.MAX_OPEN_PRS
    elif data.health == "Blocked" and data.health_reason in (k8s.REASON_BUDGET_EXCEEDED, k8s.REASON_BUDGET_UNKNOWN):
        blocked_by = schemas.BlockedBy.BUDGET
    elif data.health == "Blocked":
        # The operator said Blocked without figures that name the cause: its reason does.
        is_prs = data.health_reason == k8s.REASON_MAX_OPEN_PRS
        blocked_by = schemas.BlockedBy.MAX_OPEN_PRS if is_prs else schemas.BlockedBy.CIRCUIT_BREAKER
    remaining = None
    if data.cooldown_until is not None:
        remaining = max(0.0, (data.cooldown_until - now).total_seconds())
    return schemas.TargetState(
        namespace=event.namespace or "default",
        target=event.target,
        health=data.health,
        health_reason=data.health_reason,
        blocked_by=blocked_by,
        breaker_state=data.breaker_state,
        consecutive_failures=data.consecutive_failures,
        trips=data.trips,
        cooldown_until=data.cooldown_until,
        cooldown_remaining_seconds=remaining,
        active_runs=data.active_runs,
        pending_runs=data.pending_runs,
        open_prs=open_prs,
        max_open_prs=data.max_open_prs,
        max_concurrent_runs=data.max_concurrent_runs,
        paused=data.paused,
        reported_at=_aware(event.time),
    )


def target_states(latest: Iterable[schemas.StoredEvent], now: datetime) -> list[schemas.TargetState]:
    """Targets sorted by name, from the latest ``target.status`` event of each."""
    states = [state for stored in latest if (state := target_state(stored, now)) is not None]
    return sorted(states, key=lambda state: state.target)


def autonomy_status(
    heartbeat: schemas.StoredEvent | None, changed: schemas.StoredEvent | None
) -> schemas.AutonomyStatus:
    """Autonomy from the newer of the last heartbeat and the last ``autonomy.changed`` event."""
    beat = None
    if heartbeat is not None:
        try:
            beat = events.HeartbeatData.model_validate(heartbeat.event.data)
        except ValidationError:
            beat = None
    change = None
    if changed is not None:
        try:
            change = events.AutonomyData.model_validate(changed.event.data)
        except ValidationError:
            change = None
    if change is not None and changed is not None and (
        beat is None or heartbeat is None or _aware(changed.event.time) > _aware(heartbeat.event.time)
    ):
        same_as_beat = beat is not None and beat.autonomy_enabled == change.enabled
        return schemas.AutonomyStatus(
            enabled=change.enabled,
            mode=beat.autonomy_mode if same_as_beat and beat is not None else None,
            reason=change.reason,
            since=_aware(changed.event.time),
            source=events.EventType.AUTONOMY_CHANGED.value,
            reported_at=_aware(changed.event.time),
        )
    if beat is not None and heartbeat is not None:
        return schemas.AutonomyStatus(
            enabled=beat.autonomy_enabled,
            mode=beat.autonomy_mode,
            reason=beat.autonomy_reason,
            since=beat.autonomy_since,
            source=events.EventType.OPERATOR_HEARTBEAT.value,
            reported_at=_aware(heartbeat.event.time),
        )
    return schemas.AutonomyStatus(enabled=None, mode=None, reason=None, since=None, source=None, reported_at=None)


def _summary(event: events.CloudEvent) -> tuple[str, str]:
    """(severity, sentence) describing one activity event."""
    data: dict[str, Any] = event.data
    run = event.runid or "?"
    kind = event.type
    if kind == events.EventType.RUN_CREATED:
        return "info", f"Run {run} created"
    if kind == events.EventType.RUN_ADMITTED:
        return "info", f"Run {run} admitted"
    if kind == events.EventType.RUN_STARTED:
        return "info", f"Run {run} started"
    if kind == events.EventType.RUN_RETRY:
        return "warning", f"Run {run} retried"
    if kind == events.EventType.RUN_SUCCEEDED:
        return "ok", f"Run {run} succeeded"
    if kind == events.EventType.RUN_FAILED:
        detail = data.get("error_type") or data.get("message")
        return "error", f"Run {run} failed" + (f" ({str(detail).splitlines()[0][:120]})" if detail else "")
    if kind == events.EventType.RUN_CANCELLED:
        return "warning", f"Run {run} cancelled"
    if kind == events.EventType.PR_CREATED:
        return "ok", f"PR #{data.get('number', '?')} created by run {run}"
    if kind == events.EventType.PR_MERGED:
        return "ok", f"PR #{data.get('number', '?')} merged (run {run})"
    if kind == events.EventType.TARGET_BREAKER_TRIPPED:
        return "error", f"Circuit breaker tripped on {event.target}"
    if kind == events.EventType.TARGET_BREAKER_RESET:
        return "ok", f"Circuit breaker reset on {event.target}"
    if kind == events.EventType.TARGET_DELETED:
        return "info", f"Target {event.target} deleted"
    if kind == events.EventType.RUN_REQUEUED:
        return "warning", f"Run {run} back in the queue (emergency stop suspended its Job)"
    if kind == events.EventType.RUN_STALLED:
        action = "; stopped" if data.get("stopped") else ""
        return "warning", f"Run {run} stalled: no event for {int(data.get('idle_seconds') or 0)} s{action}"
    if kind == events.EventType.AUTONOMY_CHANGED:
        enabled = data.get("enabled")
        reason = data.get("reason")
        word = "resumed" if enabled else "paused"
        return ("ok" if enabled else "warning"), f"Autonomy {word}" + (f": {reason}" if reason else "")
    return "info", kind


def describe_event(event: events.CloudEvent) -> str:
    """The activity sentence of one event (the console's feed and the CLI share the wording)."""
    return _summary(event)[1]


def activity_item(stored: schemas.StoredEvent) -> schemas.ActivityItem:
    severity, summary = _summary(stored.event)
    return schemas.ActivityItem(
        seq=stored.seq,
        time=_aware(stored.event.time),
        type=stored.event.type,
        target=stored.event.target,
        run_id=stored.event.runid,
        severity=severity,
        summary=summary,
    )


def operator_liveness(heartbeat: schemas.StoredEvent | None, now: datetime) -> schemas.OperatorLiveness:
    """Age of the last heartbeat by the control plane's own clock (arrival time), so clock skew cannot hide it."""
    if heartbeat is None:
        return schemas.OperatorLiveness(last_heartbeat_at=None, heartbeat_seconds=None, age_seconds=None, stale=True)
    try:
        period: float | None = events.HeartbeatData.model_validate(heartbeat.event.data).heartbeat_seconds
    except ValidationError:
        period = None
    arrived = _aware(heartbeat.received_at)
    age = max(0.0, (now - arrived).total_seconds())
    stale = True if period is None else age > STALE_PERIODS * period
    return schemas.OperatorLiveness(last_heartbeat_at=arrived, heartbeat_seconds=period, age_seconds=age, stale=stale)


def _blocked_sentences(targets: list[schemas.TargetState], autonomy: schemas.AutonomyStatus) -> tuple[
    list[schemas.BlockedBy], list[str], list[str]
]:
    causes: list[schemas.BlockedBy] = []
    reasons: list[str] = []
    actions: list[str] = []
    if autonomy.enabled is False:
        causes.append(schemas.BlockedBy.AUTONOMY_PAUSED)
        stop = autonomy.mode == "drain"
        what = "Emergency stop (drain): running Jobs suspended" if stop else "Autonomy paused: no new runs are admitted"
        reasons.append(what + (f" — {autonomy.reason}." if autonomy.reason else "."))
        actions.append("Resume with `outrider autonomy resume` once it is safe.")
    breaker = [t for t in targets if t.blocked_by == schemas.BlockedBy.CIRCUIT_BREAKER]
    if breaker:
        causes.append(schemas.BlockedBy.CIRCUIT_BREAKER)
        for t in breaker:
            sentence = f"Circuit breaker open on {t.target} after {t.consecutive_failures} consecutive failures"
            if t.health == "Failed":
                sentence = f"Circuit breaker on {t.target} tripped again after its half-open probe failed"
            if t.cooldown_remaining_seconds is not None and t.cooldown_remaining_seconds > 0:
                sentence += f"; cooldown ends in {humanize_seconds(t.cooldown_remaining_seconds)}"
            reasons.append(sentence + ".")
        actions.append("Wait for the cooldown or investigate the recent failures (`outrider runs list --status failed`).")
    full = [t for t in targets if t.blocked_by == schemas.BlockedBy.MAX_OPEN_PRS]
    if full:
        causes.append(schemas.BlockedBy.MAX_OPEN_PRS)
        for t in full:
            reasons.append(f"Max open PRs reached on {t.target} ({t.open_prs}/{t.max_open_prs}).")
        actions.append("Merge or close open PRs to resume execution.")
    spent = [t for t in targets if t.blocked_by == schemas.BlockedBy.BUDGET]
    if spent:
        causes.append(schemas.BlockedBy.BUDGET)
        for t in spent:
            unknown = t.health_reason == k8s.REASON_BUDGET_UNKNOWN
            reasons.append(f"{t.target}: budget spend cannot be read, Runs held (fail closed)." if unknown
                           else f"{t.target}: LLM budget reached, Runs held until spend leaves the window.")
        actions.append("See `GET /v1/budgets`; raise the Target's spec.budget or wait for the window.")
    return causes, reasons, actions


def compute(inputs: Inputs, now: datetime | None = None) -> schemas.SystemStatus:
    """The system status from ``inputs`` at ``now`` (default: the current time). Pure: no I/O."""
    now = now or datetime.now(UTC)
    if inputs.store_error is not None:
        return schemas.SystemStatus(
            state=schemas.SystemState.ERROR,
            blocked_by=[],
            reason=f"The store is unreachable: {inputs.store_error}",
            action="Check the control plane's database (GET /readyz, OUTRIDER_DATABASE_URL) and its logs.",
            checked_at=now,
            store=schemas.StoreHealth(reachable=False, detail=inputs.store_error),
            operator=schemas.OperatorLiveness(last_heartbeat_at=None, heartbeat_seconds=None, age_seconds=None, stale=None),
            autonomy=autonomy_status(None, None),
            targets=None,
            open_prs=None,
            max_open_prs=None,
            pending_runs=None,
            active_runs=None,
            last_execution_at=None,
            recent_activity=[],
        )

    targets = target_states(inputs.target_statuses, now)
    autonomy = autonomy_status(inputs.heartbeat, inputs.autonomy_changed)
    liveness = operator_liveness(inputs.heartbeat, now)
    causes, blocked_reasons, blocked_actions = _blocked_sentences(targets, autonomy)

    # Counted as each Target's health says (the targets table shows the same): a Target Paused by autonomy or its
    # spec counts as paused even when its breaker is also open.
    paused = [t.paused or t.health == "Paused" for t in targets]
    counts = schemas.TargetCounts(
        total=len(targets),
        blocked=sum(1 for t, p in zip(targets, paused, strict=True) if not p and t.blocked_by is not None),
        paused=sum(paused),
        active=sum(1 for t, p in zip(targets, paused, strict=True) if not p and t.blocked_by is None),
    )
    reported = bool(targets)
    known_prs = [t for t in targets if t.open_prs is not None]
    pending = sum(t.pending_runs for t in targets) if reported else None
    active = sum(t.active_runs for t in targets) if reported else None

    if inputs.heartbeat is None:
        state = schemas.SystemState.ERROR
        reason = "No operator heartbeat yet."
        action = (
            "Check that the operator is running and can reach the control plane "
            "(its OUTRIDER_URL and OUTRIDER_TOKEN)."
        )
    elif liveness.stale:
        state = schemas.SystemState.ERROR
        age = humanize_seconds(liveness.age_seconds or 0)
        period = f"every {liveness.heartbeat_seconds:g}s" if liveness.heartbeat_seconds else "periodically"
        reason = f"The operator's heartbeat is stale: last seen {age} ago (expected {period})."
        action = "Check the operator's pod and logs (`kubectl logs deploy/outrider-operator`) and its access to the control plane."
    elif causes:
        state = schemas.SystemState.BLOCKED
        reason = " ".join(blocked_reasons)
        action = " ".join(blocked_actions)
    elif active:
        state = schemas.SystemState.HEALTHY
        waiting = f", {pending} waiting for admission" if pending else ""
        reason = f"{active} run{'s' if active != 1 else ''} active{waiting}."
        action = "Normal state; nothing to do."
    elif pending:
        state = schemas.SystemState.HEALTHY
        reason = f"{pending} run{'s' if pending != 1 else ''} waiting for admission."
        action = "Normal state; runs are admitted as capacity allows."
    elif not reported:
        state = schemas.SystemState.IDLE
        reason = "No Target has reported its status yet."
        action = "Create a Target and Runs (see docs/getting-started) to start execution."
    else:
        state = schemas.SystemState.IDLE
        reason = "No runs active or waiting."
        action = "Normal state. Create Runs to resume execution."

    if state == schemas.SystemState.ERROR and causes:
        reason += " Also: " + " ".join(blocked_reasons)

    return schemas.SystemStatus(
        state=state,
        blocked_by=causes,
        reason=reason,
        action=action,
        checked_at=now,
        store=schemas.StoreHealth(reachable=True),
        operator=liveness,
        autonomy=autonomy,
        targets=counts,
        open_prs=sum(t.open_prs for t in known_prs) if known_prs else None,
        max_open_prs=sum(t.max_open_prs for t in known_prs) if known_prs else None,
        pending_runs=pending,
        active_runs=active,
        last_execution_at=_aware(inputs.last_started_at) if inputs.last_started_at else None,
        recent_activity=sorted(
            (activity_item(stored) for stored in inputs.recent[:RECENT_LIMIT]), key=lambda a: (a.time, a.seq), reverse=True
        ),
    )


# --- Reading the inputs from the store ---------------------------------------------------------------------


def _stored(row: Any) -> schemas.StoredEvent:
    return schemas.StoredEvent.model_validate({"seq": row.seq, "received_at": _aware(row.received_at), "event": json.loads(row.body)})


def _latest_of_type(conn: sa.Connection, kind: str) -> schemas.StoredEvent | None:
    t = tables.events
    row = conn.execute(
        sa.select(t.c.seq, t.c.received_at, t.c.body).where(t.c.type == kind).order_by(t.c.seq.desc()).limit(1)
    ).first()
    return _stored(row) if row is not None else None


def _latest_seqs(conn: sa.Connection, kind: events.EventType) -> dict[tuple[str, str], int]:
    """(namespace, target) → seq of its last ``kind`` event (operator events, posted on change only: few rows)."""
    t = tables.events
    rows = conn.execute(sa.select(t.c.namespace, t.c.target, sa.func.max(t.c.seq))
                        .where(t.c.type == kind.value, t.c.target.is_not(None))
                        .group_by(t.c.namespace, t.c.target))  # a target is (namespace, name): two tenants' "web" are two
    return {(str(namespace), str(target)): int(seq) for namespace, target, seq in rows}


def deleted_targets(conn: sa.Connection) -> set[tuple[str, str]]:
    """(namespace, target) of the Targets whose last word from the operator is ``target.deleted``."""
    statuses = _latest_seqs(conn, events.EventType.TARGET_STATUS)
    return {key for key, seq in _latest_seqs(conn, events.EventType.TARGET_DELETED).items() if seq > statuses.get(key, 0)}


def latest_target_statuses(conn: sa.Connection) -> list[schemas.StoredEvent]:
    """The last-received ``target.status`` event of each Target that exists (none after its ``target.deleted``)."""
    t = tables.events
    deleted = _latest_seqs(conn, events.EventType.TARGET_DELETED)
    seqs = [seq for key, seq in _latest_seqs(conn, events.EventType.TARGET_STATUS).items() if seq > deleted.get(key, 0)]
    found: list[Any] = []
    for start in range(0, len(seqs), 500):
        found.extend(conn.execute(sa.select(t.c.seq, t.c.received_at, t.c.body, t.c.target, t.c.namespace)
                                  .where(t.c.seq.in_(seqs[start:start + 500]))).all())
    found.sort(key=lambda row: (row.target, row.namespace))
    return [_stored(row) for row in found]


#: A run's end, which the worker and the operator may both report (e.g. the agent's PathViolation, then the Job's
#: BackoffLimitExceeded): the feed shows the first report of each run only.
TERMINAL_TYPES = frozenset({events.EventType.RUN_SUCCEEDED, events.EventType.RUN_FAILED, events.EventType.RUN_CANCELLED})


def recent_activity(conn: sa.Connection, limit: int = RECENT_LIMIT, target: str | None = None) -> list[schemas.StoredEvent]:
    """The newest notable events by event time (ties by arrival), newest first; one end per run.

    By event time, not arrival: history sent late (a back-fill, a worker's buffer after an outage) takes its place
    in time instead of hiding what happened since."""
    # One index range per type (ix_events_type_time, newest first, a few more than ``limit`` each), merged here:
    # constant work however long the history.
    t = tables.events
    found: list[Any] = []
    for kind in ACTIVITY_TYPES:
        query = sa.select(t.c.seq, t.c.time, t.c.received_at, t.c.body).where(t.c.type == str(kind))
        if target is not None:
            query = query.where(t.c.target == target)
        found.extend(conn.execute(query.order_by(t.c.time.desc(), t.c.seq.desc()).limit(2 * limit)).all())
    stored = [_stored(row) for row in found]
    first_end: dict[tuple[str, str], int] = {}
    for item in stored:
        if item.event.type in TERMINAL_TYPES and item.event.runid:
            key = (item.event.namespace or "default", item.event.runid)
            first_end[key] = min(first_end.get(key, item.seq), item.seq)
    kept = [item for item in stored if item.event.type not in TERMINAL_TYPES or not item.event.runid
            or first_end[(item.event.namespace or "default", item.event.runid)] == item.seq]
    kept.sort(key=lambda item: (_aware(item.event.time), item.seq), reverse=True)
    return kept[:limit]


def read_inputs(conn: sa.Connection, *, recent: bool = True) -> Inputs:
    """Every input of :func:`compute`, read in one connection (sync; async stores call it via ``run_sync``).
    ``recent=False`` leaves out the recent activity (parsing ~20 event bodies), which only the listing uses."""
    started = _latest_of_type(conn, events.EventType.RUN_STARTED.value)
    return Inputs(
        heartbeat=_latest_of_type(conn, events.EventType.OPERATOR_HEARTBEAT.value),
        autonomy_changed=_latest_of_type(conn, events.EventType.AUTONOMY_CHANGED.value),
        target_statuses=latest_target_statuses(conn),
        last_started_at=_aware(started.event.time) if started is not None else None,
        recent=recent_activity(conn) if recent else [],
    )


def load(source: store.Store, *, recent: bool = True) -> Inputs:
    """:func:`read_inputs` on a fresh connection of ``source`` (a ``store.Store``: its ``reading()``); a database
    error becomes ``store_error`` (state ``error``)."""
    try:
        with source.reading() as conn:
            return read_inputs(conn, recent=recent)
    except store.StoreUnavailable as exc:
        return Inputs(store_error=str(exc))
