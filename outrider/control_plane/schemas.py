"""Shapes of the control plane's HTTP API: the contract clients (CLI, console, AI agents) rely on.

These pydantic models are separate from the storage tables on purpose: the store can change
its layout without changing what clients see. ``/openapi.json`` and ``docs/api.md`` follow them.
A field that has no data is ``null``; nothing here is ever filled with a guess.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, field_validator

from outrider.common import events

T = TypeVar("T")


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a stable machine-readable code, a human sentence, and details where useful."""

    error: str = Field(description="Stable code, e.g. unauthorized, invalid_event, payload_too_large, not_found, store_unavailable.")
    message: str
    detail: list[events.EventProblem] | list[dict[str, Any]] | None = None


class IngestResult(BaseModel):
    accepted: int = Field(description="Events newly stored by this request.")
    duplicates: int = Field(description="Events already stored earlier (same source and id), acknowledged again.")
    position: int | None = Field(
        description=(
            "The event log's position after this commit: every event of the request is at or below it. Pass it "
            "as ?min_position= (or the Outrider-Min-Position header) to a read that must see these events "
            "(docs/api.md, read-your-writes). Null when the request carried no event. Also sent as the "
            "Outrider-Position header."
        ),
    )


_REQUIRED_ATTRIBUTES = frozenset(name for name, field in events.CloudEvent.model_fields.items() if field.is_required())


class ProjectionStatus(BaseModel):
    """The projector's progress through the event log (``GET /v1/projection``)."""

    position: int = Field(description="Log position (seq) the projection has reached: its checkpoint.")
    head: int = Field(description="The last seq in the log.")
    lag_events: int = Field(description="Events in the log after the checkpoint (counted up to 1,000,000).")
    lag_seconds: float = Field(description="How long the oldest unprojected event has waited since it was received; 0 when none waits.")
    holder: str | None = Field(description="The projector holding the lease (host:pid:random); null when none does.")
    heartbeat_age_seconds: float | None = Field(description="Seconds since the lease holder's last heartbeat; null when nobody holds it.")
    projected_at: float | None = Field(description="Unix time of the last projection write; null before the first.")
    swept_through: int = Field(description="Highest seq a retention sweep deleted (0: none); a rebuild cannot reproduce what came before.")
    stopped: str | None = Field(description="Why no projector works for this database (readiness fails then); null when one does.")


class StoredEvent(BaseModel):
    """An event as the control plane keeps it: its arrival order and time, and the event itself."""

    seq: int = Field(description="Position in the control plane's history; increases with arrival.")
    received_at: datetime
    event: events.CloudEvent

    @field_validator("event", mode="wrap")
    @classmethod
    def _as_stored(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """An event stored under older, looser rules stays readable: rules tightened at ingestion (time range,
        nesting depth, …) must never make a page or endpoint that shows history fail."""
        try:
            return handler(value)
        except ValidationError as exc:
            if not isinstance(value, dict):
                raise
            # Leave out the optional attributes today's rules refuse (the stored body itself is unchanged).
            refused = {str(error["loc"][0]) for error in exc.errors() if error["loc"]} - _REQUIRED_ATTRIBUTES
            if not refused:
                raise
            return handler({key: item for key, item in value.items() if key not in refused})


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class TokenUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="Null when no call in this group reported a cost.")
    calls: int = 0


class LlmUsage(BaseModel):
    total: TokenUsage
    by_phase: dict[str, TokenUsage] = Field(description="Keyed by phase; calls without a phase under 'unknown'.")
    by_model: dict[str, TokenUsage] = Field(description="Keyed by 'provider/model'.")


class PhaseTiming(BaseModel):
    started_at: datetime | None
    duration_seconds: float | None = Field(description="Null while the stage has not completed.")


class ResourceBreakdown(BaseModel):
    llm_calls: int
    retries: int


class RunMetrics(BaseModel):
    phase_timings: dict[str, PhaseTiming]
    resource_breakdown: ResourceBreakdown
    notes: list[str] = Field(default_factory=list, description="Facts about the record itself, e.g. 'completed before started event arrived'.")


class PullRequest(BaseModel):
    number: int
    url: str
    merged: bool


class Artifact(BaseModel):
    """One artifact of a run, from its latest ``run.artifact`` event with this key."""

    key: str
    kind: str
    bytes: int | None = Field(description="Size in bytes; null when the producer did not say.")
    sha256: str | None
    url: str | None
    reported_at: datetime | None = Field(description="Time of the run.artifact event this entry comes from.")


class RunRecord(BaseModel):
    """One run, folded from its events. The same events in any order or repetition give the same record."""

    namespace: str = Field(default="default", description="The run's namespace (tenant): a run is (namespace, run_id).")
    run_id: str
    target: str | None
    status: RunStatus
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None = Field(description="completed_at - started_at (or created_at when never started); null while unfinished.")
    error_summary: str | None = Field(description="Short, human: '<error_type> in <stage>: <first line of message>'.")
    error_type: str | None = None
    error_stage: str | None = None
    metrics: RunMetrics
    llm_usage: LlmUsage | None = Field(description="Null when the run reported no LLM usage.")
    pull_requests: list[PullRequest] = Field(default_factory=list)
    pr_count: int
    event_count: int
    last_event_at: datetime | None
    stalled_since: datetime | None = Field(
        default=None, description="When the operator's watchdog found the running run silent (run.stalled), while no "
        "event of the run has arrived since; null otherwise (docs/concepts/watchdog.md).")
    task_id: str | None = Field(default=None, description="The work item: run.created data.task.id (or data.task_id); null when none was named.")
    task_title: str | None = Field(default=None, description="run.created data.task.title, when given.")
    probe: bool = Field(default=False, description="Admitted as the half-open circuit breaker's probe (run.admitted data.probe).")
    artifacts: list[Artifact] = Field(default_factory=list, description="From run.artifact events, by key (latest event per key).")


class FailureRef(BaseModel):
    run_id: str
    target: str | None
    completed_at: datetime | None
    error_summary: str | None


class RunSummary(BaseModel):
    window: str
    since: datetime
    target: str | None = Field(default=None, description="The target the summary is narrowed to; null: every target the caller sees.")
    counts: dict[RunStatus, int] = Field(description="Runs created in the window, by status (every status present, zeros included).")
    total: int
    success_rate: float | None = Field(description="succeeded / finished; null when nothing finished.")
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    pr_count: int
    latest_failure: FailureRef | None


class ErrorGroup(BaseModel):
    key: str | None = Field(description="Target, error type or stage; null where the failure did not say.")
    failed: int
    finished: int | None = Field(description="Finished runs in the same group (for by=target); null where a group of finished runs has no meaning.")
    rate: float | None = Field(description="failed / finished, or failed / all failed for error_type and stage; null when the denominator is 0.")


class ErrorAnalytics(BaseModel):
    window: str
    since: datetime
    by: str
    failed: int
    finished: int
    failure_rate: float | None
    groups: list[ErrorGroup]


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    ready: bool
    store: str
    detail: str | None = None


# --- System status (GET /v1/status, /v1/targets, /v1/autonomy/status) -------------------------------------
# Built by outrider.control_plane.status from the operator's heartbeat and target.status events; the console,
# the CLI and the metrics read these shapes. Missing data is null, never a guess.


class SystemState(enum.StrEnum):
    HEALTHY = "healthy"
    IDLE = "idle"
    BLOCKED = "blocked"
    ERROR = "error"


class BlockedBy(enum.StrEnum):
    MAX_OPEN_PRS = "max_open_prs"
    CIRCUIT_BREAKER = "circuit_breaker"
    AUTONOMY_PAUSED = "autonomy_paused"
    BUDGET = "budget"  # Runs held because LLM spend reached a budget, or cannot be read (docs/concepts/budgets.md)


class AutonomyStatus(BaseModel):
    """Autonomy as the operator last reported it (heartbeat), or a newer ``autonomy.changed`` event."""

    enabled: bool | None = Field(description="Null when the operator has reported nothing yet.")
    mode: str | None = Field(description="hold | drain; null when unknown.")
    reason: str | None
    since: datetime | None = Field(description="When autonomy last changed, as reported; null when unknown.")
    source: str | None = Field(description="operator.heartbeat or autonomy.changed: the event this view comes from.")
    reported_at: datetime | None = Field(description="Time of that event.")


class TargetState(BaseModel):
    """One Target as the operator last reported it in a ``target.status`` event."""

    namespace: str = Field(default="default", description="The Target's namespace (tenant): a target is (namespace, name).")
    target: str
    health: str
    health_reason: str | None
    blocked_by: BlockedBy | None = Field(description="Why this target cannot admit runs; null when it can.")
    breaker_state: str
    consecutive_failures: int
    trips: int
    cooldown_until: datetime | None
    cooldown_remaining_seconds: float | None = Field(description="Seconds until cooldown_until at checked time; null without a cooldown.")
    active_runs: int
    pending_runs: int
    open_prs: int | None = Field(description="Null when nobody reports this Target's open PRs (the operator's target.status open_prs is null).")
    max_open_prs: int
    max_concurrent_runs: int
    paused: bool
    reported_at: datetime = Field(description="Time of the target.status event this comes from.")


class OperatorLiveness(BaseModel):
    last_heartbeat_at: datetime | None = Field(description="Null when no heartbeat was ever received.")
    heartbeat_seconds: float | None = Field(description="The period the operator announced.")
    age_seconds: float | None
    stale: bool | None = Field(description="Older than 3 periods (or never seen); null when the store could not be read.")


class StoreHealth(BaseModel):
    reachable: bool
    detail: str | None = None


class TargetCounts(BaseModel):
    total: int
    active: int = Field(description="Targets neither blocked nor paused.")
    blocked: int = Field(description="Targets blocked by a circuit breaker, max open PRs or a budget (health Blocked or Failed), not paused.")
    paused: int = Field(description="Targets whose health is Paused (autonomy paused, or spec.paused), whatever else holds them.")


class ActivityItem(BaseModel):
    seq: int
    time: datetime
    type: str
    target: str | None
    run_id: str | None
    severity: str = Field(description="ok | info | warning | error, for display.")
    summary: str


class SystemStatus(BaseModel):
    """The whole system in one answer: state, why, what to do, and the figures behind it."""

    state: SystemState
    blocked_by: list[BlockedBy] = Field(description="Every cause that holds work back; empty when none.")
    reason: str = Field(description="One or two human sentences saying why the state is what it is.")
    action: str = Field(description="What an operator should do next.")
    checked_at: datetime
    store: StoreHealth
    operator: OperatorLiveness
    autonomy: AutonomyStatus
    targets: TargetCounts | None = Field(description="Null when the store could not be read.")
    open_prs: int | None = Field(description="Sum over the targets whose open PRs are known; null when none is.")
    max_open_prs: int | None = Field(description="Sum of the limits of those same targets; null when none is known.")
    pending_runs: int | None = Field(description="Runs waiting for admission (ready), summed over targets.")
    active_runs: int | None
    last_execution_at: datetime | None = Field(description="Latest run.started event; null when none.")
    recent_activity: list[ActivityItem]


# --- Insights (GET /v1/analytics/trends, /v1/analytics/models, /v1/graph/*, /v1/runs/{id}/logs) -------------


class TrendBucket(BaseModel):
    """One time bucket [start, end). Runs count where their started_at / completed_at falls."""

    start: datetime
    end: datetime
    runs_started: int = Field(description="Runs whose started_at is in the bucket.")
    runs_finished: int = Field(description="Runs whose completed_at is in the bucket (succeeded, failed or cancelled).")
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None = Field(description="succeeded / runs_finished of this bucket; null when nothing finished.")
    rolling_success_rate: float | None = Field(description="succeeded / finished from the first bucket to this one; null while nothing finished.")
    tokens_per_successful_run: float | None = Field(description="(input + output tokens) of the bucket's succeeded runs / succeeded; null when none succeeded.")
    prs: int = Field(description="Pull requests of the runs finished in the bucket.")
    cost_usd: float | None = Field(description="Cost of the runs finished in the bucket; null when none reported a cost.")
    cost_per_pr_usd: float | None = Field(description="cost_usd / prs; null when prs is 0 or no cost was reported.")
    breaker_trips: int = Field(description="target.breaker.tripped events whose time is in the bucket.")


class Trends(BaseModel):
    window: str
    bucket: str
    target: str | None
    since: datetime = Field(description="Start of the first bucket: now - window, rounded down to a multiple of bucket (UTC epoch).")
    until: datetime = Field(description="When the answer was computed (inside the last bucket).")
    buckets: list[TrendBucket]


class ModelStats(BaseModel):
    """One provider/model over the LLM calls (run.llm_usage events) whose time is in the window."""

    provider: str
    model: str
    calls: int
    error_calls: int = Field(description="Calls whose event carries a non-empty data.error.")
    error_rate: float | None = Field(description="error_calls / calls.")
    latency_samples: int = Field(description="Calls that reported latency_s.")
    latency_p50_seconds: float | None = Field(description=(
        "Over the calls that reported latency_s, estimated from the hourly latency histogram: within 25 % of the "
        "exact percentile (docs/api.md); null when no call reported one."))
    latency_p95_seconds: float | None
    latency_p99_seconds: float | None
    input_tokens: int
    output_tokens: int
    tokens_per_call: float | None = Field(description="(input + output tokens) / calls.")
    cost_usd: float | None = Field(description="Sum of the priced calls; null when no call reported a cost.")
    runs: int = Field(description="Distinct runs that made at least one of these calls.")
    runs_finished: int
    runs_succeeded: int
    runs_failed: int
    run_success_rate: float | None = Field(description="runs_succeeded / runs_finished (runs that used the model); null when none finished.")
    run_failure_rate: float | None = Field(description="runs_failed / runs_finished; null when none finished.")


class ModelAnalytics(BaseModel):
    window: str
    target: str | None
    since: datetime
    models: list[ModelStats]


class GraphNode(BaseModel):
    id: str = Field(description="target:<t>, task:<t>/<task id>, run:<run id> or pr:<t>#<number>.")
    kind: str = Field(description="target | task | run | pr.")
    label: str
    status: str | None = Field(description="run: its status; task: its latest run's; pr: open | merged; target: null.")


class GraphEdge(BaseModel):
    source: str
    target: str
    kind: str = Field(description="task | run | pr | retry | probe (see docs/api.md).")


class GraphNodes(BaseModel):
    window: str
    since: datetime
    truncated: bool = Field(description="True when more runs than limit were created in the window (the oldest limit are shown).")
    items: list[GraphNode]


class GraphEdges(BaseModel):
    window: str
    since: datetime
    truncated: bool
    items: list[GraphEdge]


class LogLine(BaseModel):
    seq: int
    time: datetime
    level: str
    message: str
    source: str


class LogPage(BaseModel):
    items: list[LogLine]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null when no more lines are stored yet.")


class BudgetWindow(BaseModel):
    """One scope's LLM spend over one rolling window (docs/concepts/budgets.md)."""

    window: str = Field(description="1h or 24h: the spend of run.llm_usage events whose time is in (now - window, now].")
    window_seconds: int
    limit_usd: float | None = Field(description="The limit the operator reported (or the request's override); null: none.")
    spent_usd: float = Field(description="Sum of cost_usd of the priced LLM calls in the window.")
    remaining_usd: float | None = Field(description="max(0, limit - spent); null without a limit.")
    exceeded: bool | None = Field(description="spent >= limit; null without a limit.")
    resets_at: datetime | None = Field(
        description="When exceeded: the earliest time at which, with no new spend, the spend left in the window is "
                    "under the limit (oldest call that must leave + window). Null otherwise.")


class Budget(BaseModel):
    scope: str = Field(description="'global' (every call) or a Target name.")
    namespace: str | None = Field(default=None, description="The Target's namespace; null for the global scope.")
    pacing: str | None = Field(description="burst or even as the operator reported it; null when unknown.")
    avg_run_cost_usd: float | None = Field(
        default=None, description="Average cost of the scope's runs that finished in the last 24 h with a cost "
                                  "(the operator's even pacing); null when there is none.")
    windows: list[BudgetWindow]


class BudgetsResponse(BaseModel):
    generated_at: datetime
    budgets: list[Budget] = Field(description="The global budget first, then one per Target.")


# --- Keys and audit (POST/GET/DELETE /v1/keys, GET /v1/audit; admin only) -------------------------------------

#: A Kubernetes namespace name (DNS label), as bound to a key.
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class KeyRole(enum.StrEnum):
    INGEST = "ingest"
    READ = "read"
    OPERATOR = "operator"
    ADMIN = "admin"


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: KeyRole = Field(description="ingest: write run events; read: read API, console, streams; operator: the "
                                      "operator's control events and reads; admin: everything, keys included.")
    name: str | None = Field(default=None, max_length=256, description="What the key is for (shown in listings and the audit log).")
    namespaces: list[Annotated[str, Field(min_length=1, max_length=63, pattern=NAMESPACE_PATTERN)]] | None = Field(
        default=None, max_length=100, description="Namespaces the key may read or write; null: all.")
    targets: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(
        default=None, max_length=100, description="Targets the key may read or write; null: all.")
    expires_in_seconds: int | None = Field(default=None, gt=0, le=10 * 366 * 86400,
                                           description="Lifetime from now; null: no expiry (revoke it when done).")


class KeyInfo(BaseModel):
    id: str
    name: str | None
    role: str
    namespaces: list[str] | None
    targets: list[str] | None
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyInfo):
    secret: str = Field(description="The key itself: shown this once, stored only as a hash.")


class AuditEntry(BaseModel):
    seq: int
    time: datetime
    actor: str | None = Field(description="Key id, 'token' (a configured admin token), 'operator-token', or run:<ns>/<run>; null: unauthenticated.")
    role: str | None
    action: str = Field(description="key.created, key.revoked, event.control, write.refused, login.failed, login, session.ended.")
    object: str | None
    outcome: str
    remote: str | None
    detail: dict[str, Any] | None
