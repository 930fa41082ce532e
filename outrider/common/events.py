"""The event contract shared by workers, the operator and the control plane.

Events are CloudEvents 1.0 in JSON structured mode with three Outrider extension
attributes, ``target``, ``runid`` and ``namespace`` (a run's and a target's identity
is (namespace, name): namespaces are tenants). The pydantic models here are the single
source of truth: the control plane validates with them, the operator and the
worker SDK build events with them, and ``docs/events.md`` is generated from
their JSON schemas.

An unknown ``type`` is accepted (forward compatibility) with only the envelope
validated; a known type also has its ``data`` validated against its model.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime
from math import isfinite
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import SchemaValidator


class EventType(enum.StrEnum):
    """Every event type Outrider understands. Others are stored but change no run record."""

    RUN_CREATED = "run.created"
    RUN_ADMITTED = "run.admitted"
    RUN_STARTED = "run.started"
    RUN_STAGE_STARTED = "run.stage.started"
    RUN_STAGE_COMPLETED = "run.stage.completed"
    RUN_PROGRESS = "run.progress"
    RUN_LOG = "run.log"
    RUN_ARTIFACT = "run.artifact"
    RUN_LLM_USAGE = "run.llm_usage"
    RUN_RETRY = "run.retry"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_STALLED = "run.stalled"
    RUN_REQUEUED = "run.requeued"
    PR_CREATED = "pr.created"
    PR_MERGED = "pr.merged"
    TARGET_BREAKER_TRIPPED = "target.breaker.tripped"
    TARGET_DELETED = "target.deleted"
    TARGET_BREAKER_RESET = "target.breaker.reset"
    AUTONOMY_CHANGED = "autonomy.changed"
    TARGET_STATUS = "target.status"
    OPERATOR_HEARTBEAT = "operator.heartbeat"


#: Bounds that keep sums of many events inside 64-bit integers in the store (far beyond any real call).
MAX_TOKENS = 10**12
MAX_COST_USD = 10**6
#: The range of every time an event carries: earlier or later moments are refused (422), because UTC arithmetic
#: near year 1 or 9999 overflows (``0001-01-01T00:00:00+14:00`` is in year 0) and nothing an agent reports is there.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: The deepest nesting of objects and arrays accepted in an event (the event object is level 1, its ``data`` 2, …);
#: deeper is refused (422): a stored event must stay renderable and serialisable by every reader.
MAX_DEPTH = 32


#: A time with an offset, within [EARLIEST, LATEST) (compared in UTC by pydantic-core, offsets included).
Moment = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]


class EventData(BaseModel):
    """Base of every known type's ``data``: extra keys are kept, for forward compatibility."""

    model_config = ConfigDict(extra="allow")


class EmptyData(EventData):
    """Types whose ``data`` carries nothing required."""


class StageData(EventData):
    stage: str = Field(min_length=1, max_length=128, description="Stage name, e.g. plan, code, test.")


class ProgressData(StageData):
    iteration: int = Field(ge=0, description="Current iteration of the stage's loop.")
    max_iterations: int | None = Field(default=None, ge=0, description="Upper bound, when the agent has one.")


class LogData(EventData):
    level: Literal["debug", "info", "warning", "error", "critical"]
    message: str = Field(max_length=65536)


class LlmUsageData(EventData):
    provider: str = Field(min_length=1, max_length=128, description="e.g. anthropic, openai.")
    model: str = Field(min_length=1, max_length=256)
    phase: str | None = Field(default=None, max_length=128, description="The run phase that made the call.")
    input_tokens: int = Field(ge=0, le=MAX_TOKENS, description="Tokens sent (at most 10^12: sums must fit 64 bits).")
    output_tokens: int = Field(ge=0, le=MAX_TOKENS, description="Tokens received (at most 10^12).")
    cost_usd: float | None = Field(
        default=None, ge=0, le=MAX_COST_USD, allow_inf_nan=False, description="Null when the provider did not price it."
    )
    latency_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class ArtifactData(EventData):
    """Something a run produced and stored elsewhere (a patch, a report, a log archive): where and what."""

    key: str = Field(min_length=1, max_length=512, description="Name of the artifact within the run; a later event with the same key replaces it.")
    kind: str = Field(min_length=1, max_length=128, description="What it is, e.g. patch, report, logs, screenshot.")
    bytes: int | None = Field(default=None, ge=0, le=2**53, description="Size in bytes, when known.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the content, when known.")
    url: str | None = Field(default=None, max_length=2048, description="Where to fetch it, when it is fetchable.")


class StalledData(EventData):
    """The operator's no-progress watchdog found the run silent (docs/concepts/watchdog.md)."""

    idle_seconds: float = Field(ge=0, le=1e9, allow_inf_nan=False, description="Seconds since the run's last event.")
    timeout_seconds: int = Field(ge=1, le=604800, description="The Target's progressTimeoutSeconds.")
    stopped: bool = Field(default=False, description="True: the watchdog also failed the run (NoProgress) and suspended its Job.")


class FailedData(EventData):
    error_type: str | None = Field(default=None, max_length=256)
    message: str | None = Field(default=None, max_length=65536)
    stage: str | None = Field(default=None, max_length=128)
    traceback: str | None = Field(default=None, max_length=262144)


class PullRequestData(EventData):
    number: int = Field(ge=0, le=2**53)
    url: str = Field(min_length=1, max_length=2048)


class AutonomyData(EventData):
    enabled: bool
    reason: str | None = Field(default=None, max_length=1024)


class TargetStatusData(EventData):
    """A snapshot of one Target's status as the operator sees it, posted whenever it changes."""

    health: Literal["Healthy", "Idle", "Blocked", "Failed", "Paused"]
    health_reason: str | None = None
    breaker_state: Literal["Closed", "Open", "HalfOpen"]
    consecutive_failures: int = Field(ge=0)
    trips: int = Field(ge=0)
    cooldown_until: Moment | None = None
    active_runs: int = Field(ge=0)
    pending_runs: int = Field(ge=0)
    open_prs: int | None = Field(default=None, ge=0, description="Null: nobody reports this Target's open PRs.")
    max_open_prs: int = Field(ge=0)
    max_concurrent_runs: int = Field(ge=0)
    paused: bool = False
    budget_usd_per_hour: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False,
                                              description="spec.budget.usdPerHour; null: no hourly budget.")
    budget_usd_per_day: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False,
                                             description="spec.budget.usdPerDay; null: no daily budget.")
    budget_pacing: Literal["burst", "even"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_unknown_open_prs(cls, raw: Any) -> Any:
        """Events from before open_prs was nullable said "unknown" as ``open_prs: 0, open_prs_known: false``."""
        if isinstance(raw, dict) and raw.get("open_prs_known") is False:
            return {**raw, "open_prs": None}
        return raw


class HeartbeatData(EventData):
    """The operator is alive; posted every ``heartbeat_seconds`` with its view of autonomy."""

    autonomy_enabled: bool
    autonomy_mode: Literal["hold", "drain"] | None = None
    autonomy_reason: str | None = None
    autonomy_since: Moment | None = None
    heartbeat_seconds: float = Field(gt=0, le=3600, description="The operator's heartbeat period (at most an hour: a longer one would mask OperatorDown).")
    budget_usd_per_hour: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False,
                                              description="The autonomy ConfigMap's budgetUsdPerHour (global); null: none.")
    budget_usd_per_day: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False,
                                             description="The autonomy ConfigMap's budgetUsdPerDay (global); null: none.")


#: The ``data`` model of each known type.
DATA_MODELS: dict[EventType, type[EventData]] = {
    EventType.RUN_CREATED: EmptyData,
    EventType.RUN_ADMITTED: EmptyData,
    EventType.RUN_STARTED: EmptyData,
    EventType.RUN_STAGE_STARTED: StageData,
    EventType.RUN_STAGE_COMPLETED: StageData,
    EventType.RUN_PROGRESS: ProgressData,
    EventType.RUN_LOG: LogData,
    EventType.RUN_LLM_USAGE: LlmUsageData,
    EventType.RUN_ARTIFACT: ArtifactData,
    EventType.RUN_RETRY: EmptyData,
    EventType.RUN_SUCCEEDED: EmptyData,
    EventType.RUN_FAILED: FailedData,
    EventType.RUN_CANCELLED: EmptyData,
    EventType.RUN_STALLED: StalledData,
    EventType.RUN_REQUEUED: EmptyData,
    EventType.PR_CREATED: PullRequestData,
    EventType.PR_MERGED: PullRequestData,
    EventType.TARGET_BREAKER_TRIPPED: EmptyData,
    EventType.TARGET_BREAKER_RESET: EmptyData,
    EventType.AUTONOMY_CHANGED: AutonomyData,
    EventType.TARGET_STATUS: TargetStatusData,
    EventType.TARGET_DELETED: EmptyData,
    EventType.OPERATOR_HEARTBEAT: HeartbeatData,
}

#: The ``data`` model to check per type name, without the types whose model is :class:`EmptyData` (no fields,
#: extra keys allowed: every object passes, so validating it again only costs time).
_DATA_CHECKS: dict[str, type[EventData]] = {kind.value: model for kind, model in DATA_MODELS.items() if model is not EmptyData}

#: What each known type means, for producers and for docs/events.md.
DESCRIPTIONS: dict[EventType, str] = {
    EventType.RUN_CREATED: (
        "A run was requested (its Run object exists). Status: queued. Optional data.task: {id, title} (the Run's "
        "spec.task; the operator sends it) or data.task_id: the work item, which groups runs in the run graph."
    ),
    EventType.RUN_ADMITTED: (
        "The operator admitted the run (concurrency, breaker and PR limits allow it). Status: admitted. "
        "data.probe true: the run is the half-open circuit breaker's probe (a probe edge in the run graph)."
    ),
    EventType.RUN_STARTED: "The worker started executing the run. Status: running; sets started_at.",
    EventType.RUN_STAGE_STARTED: "The run entered a stage (plan, code, test, …); opens that stage's phase timing.",
    EventType.RUN_STAGE_COMPLETED: "The run finished a stage; closes that stage's phase timing.",
    EventType.RUN_PROGRESS: "An iteration of a stage's loop (heartbeat of progress).",
    EventType.RUN_LOG: "A log line worth keeping with the run. Does not change the status.",
    EventType.RUN_LLM_USAGE: (
        "One LLM call: tokens, cost and latency, summed into the run's llm_usage. Optional data.error (a string): "
        "the call failed; counted in GET /v1/analytics/models error_rate."
    ),
    EventType.RUN_ARTIFACT: "The run stored an artifact; listed in the run record's artifacts (latest event per key).",
    EventType.RUN_RETRY: "The run retried something (counted in resource_breakdown.retries).",
    EventType.RUN_SUCCEEDED: "The run ended successfully. Status: succeeded; sets completed_at.",
    EventType.RUN_FAILED: "The run ended in failure. Status: failed; sets completed_at and the error summary.",
    EventType.RUN_CANCELLED: "The run was cancelled. Status: cancelled; sets completed_at.",
    EventType.RUN_REQUEUED: (
        "The run went back to waiting for admission: the emergency stop (autonomy mode drain) suspended its running "
        "Job. Status: queued again until it is admitted and started again. Optional data.reason. Only the operator "
        "may send it."
    ),
    EventType.RUN_STALLED: (
        "The operator's no-progress watchdog found the run silent for its Target's progressTimeoutSeconds. Not "
        "activity of the run (last_event_at ignores it): the record's stalled_since says since when, until the "
        "run sends anything again. Only the operator may send it."
    ),
    EventType.PR_CREATED: "The run opened a pull request.",
    EventType.PR_MERGED: "A pull request of the run was merged.",
    EventType.TARGET_BREAKER_TRIPPED: "The target's circuit breaker opened after repeated failures.",
    EventType.TARGET_BREAKER_RESET: "The target's circuit breaker closed again.",
    EventType.AUTONOMY_CHANGED: "Autonomy was switched on or off (globally), with the reason.",
    EventType.TARGET_STATUS: "The operator's snapshot of one target's status, posted whenever it changes.",
    EventType.TARGET_DELETED: (
        "The Target was deleted: it leaves the status page, GET /v1/status and its series leave /metrics (its "
        "counters fold into target=\"other\"). A later target.status (the Target created again) brings it back."
    ),
    EventType.OPERATOR_HEARTBEAT: "The operator is alive; posted every heartbeat_seconds with its view of autonomy.",
}

_KNOWN_TYPES = frozenset(kind.value for kind in EventType)
#: The extension attribute set on an event that arrived without ``time`` (its time is then when it was received).
TIME_SOURCE = "timesource"

#: Types that describe one run and therefore need ``runid``.
RUN_SCOPED_PREFIXES = ("run.", "pr.")
#: Types that describe one target and therefore need ``target``.
TARGET_SCOPED_PREFIXES = ("target.",)


class CloudEvent(BaseModel):
    """One CloudEvents 1.0 event in JSON structured mode, with Outrider's extensions."""

    model_config = ConfigDict(extra="allow")  # CloudEvents permits further extension attributes.

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=256, description="Unique within its source; (source, id) is the idempotency key.")
    source: str = Field(min_length=1, max_length=1024, description="URI-reference of the producer, e.g. /workers/pod-abc.")
    type: str = Field(min_length=1, max_length=256, description="Any non-empty string (CloudEvents 1.0); Outrider's own types are listed below.")
    time: Moment = Field(description=(
        "RFC 3339 timestamp with an offset, between 1970-01-01 and 9000-01-01 (UTC). Optional when sending: an event "
        "without it gets the time it was received, and the extension attribute timesource: \"received\" says so."))
    subject: str | None = Field(default=None, max_length=1024)
    datacontenttype: str | None = Field(default=None, max_length=256)
    target: str | None = Field(default=None, min_length=1, max_length=253, description="Outrider extension: the target (e.g. repository) the event is about.")
    runid: str | None = Field(default=None, min_length=1, max_length=253, description="Outrider extension: the run the event is about.")
    namespace: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description=(
            "Outrider extension: the Kubernetes namespace of the run and target (tenant). Missing: the namespace "
            "the writer's credential is bound to, else 'default'."
        ),
    )
    data: Any = Field(default=None, description=(
        "The event's payload: any JSON value, or absent. Outrider's own types need a JSON object (absent reads as {})."))
    data_base64: str | None = Field(
        default=None, max_length=16 * 1024 * 1024, pattern=r"^[A-Za-z0-9+/]*={0,2}$",
        description="Binary payload, base64 (CloudEvents JSON format): kept and served back as sent; never with data.",
    )

    @model_validator(mode="after")
    def _one_payload(self) -> CloudEvent:
        if self.data_base64 is not None and self.data is not None:
            raise ValueError("data and data_base64 are mutually exclusive (CloudEvents JSON format)")
        if self.data is None and self.data_base64 is None and self.type in _KNOWN_TYPES:
            self.data = {}  # Outrider's own types always carry an object; their readers call data.get
        return self

    def known_type(self) -> EventType | None:
        """The event's type as an :class:`EventType`, or None for a type Outrider does not know."""
        try:
            return EventType(self.type)
        except ValueError:
            return None


class EventProblem(BaseModel):
    """One reason an event was refused: where (batch index and dotted field) and why."""

    index: int = Field(description="Position in the batch; 0 for a single event.")
    field: str = Field(description="Dotted path of the offending field, e.g. data.input_tokens; empty for the whole event.")
    message: str


def _problems(exc: ValidationError, index: int, prefix: str = "") -> list[EventProblem]:
    return [
        EventProblem(index=index, field=prefix + ".".join(str(part) for part in err["loc"]), message=err["msg"])
        for err in exc.errors()
    ]


#: The models' own validators, called directly: ``model_validate`` checks its keyword arguments in Python
#: first, which cost as much as validating a small event's envelope (this runs once per ingested event).
_validate_envelope = CloudEvent.__pydantic_validator__.validate_python
_DATA_VALIDATORS = {kind: model.__pydantic_validator__.validate_python for kind, model in _DATA_CHECKS.items()}


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels deep (iterative: cannot recurse out).
    Level by level, so a whole batch is checked in a few passes rather than a few per event."""
    level: list[Any] = [value]
    for _level in range(limit):  # after pass k, `level` holds the containers at depth k + 2
        level = [item for node in level for item in (node.values() if isinstance(node, dict) else node)
                 if isinstance(item, dict | list)]
        if not level:
            return False
    return True


def _depth_problem(value: Any, index: int) -> EventProblem | None:
    """A problem when ``value`` nests objects/arrays deeper than :data:`MAX_DEPTH`."""
    if nests_deeper_than(value, MAX_DEPTH):
        return EventProblem(index=index, field="", message=f"objects and arrays nest deeper than {MAX_DEPTH} levels")
    return None


def unstorable_problems(raw: Any, index: int) -> list[EventProblem]:
    """Strings a database refuses to store: NUL characters (PostgreSQL text and jsonb reject them) and lone
    surrogates (not encodable as UTF-8). Called only when the raw body mentions such an escape (cheap scan)."""
    problems: list[EventProblem] = []
    stack: list[tuple[str, Any]] = [("", raw)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                stack.append((f"{path}.{key}" if path else str(key), item))
                stack.append((path, str(key)))  # keys are stored too
        elif isinstance(node, list):
            stack.extend((f"{path}.{position}" if path else str(position), item) for position, item in enumerate(node))
        elif isinstance(node, str):
            if "\x00" in node:
                problems.append(EventProblem(index=index, field=path, message="NUL characters cannot be stored"))
            else:
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    problems.append(EventProblem(index=index, field=path, message="lone UTF-16 surrogates cannot be stored"))
    return problems


def validate_event(raw: Any, index: int = 0, received: datetime | None = None, *,
                   depth_checked: bool = False) -> tuple[CloudEvent | None, list[EventProblem]]:
    """Validate one decoded JSON value as an event: the envelope, the scope attributes, and a known type's data.

    An event without ``time`` (optional in CloudEvents) gets ``received`` (default: now) and ``timesource: received``.
    ``depth_checked``: the caller found the whole batch within :data:`MAX_DEPTH` (:func:`nests_deeper_than`)."""
    if not isinstance(raw, dict):
        return None, [EventProblem(index=index, field="", message="an event must be a JSON object")]
    if raw.get("time") is None:
        raw = {**raw, "time": (received or datetime.now(UTC)).isoformat(), TIME_SOURCE: "received"}
    too_deep = None if depth_checked else _depth_problem(raw, index)
    if too_deep is not None:
        return None, [too_deep]
    try:
        event: CloudEvent = _validate_envelope(raw)
    except ValidationError as exc:
        return None, _problems(exc, index)
    problems = _type_problems(event, index)
    return (event if not problems else None), problems


def _type_problems(event: CloudEvent, index: int) -> list[EventProblem]:
    """What the envelope model cannot say alone: the scope attributes a type needs, and a known type's data."""
    problems: list[EventProblem] = []
    if event.type.startswith(RUN_SCOPED_PREFIXES) and not event.runid:
        problems.append(EventProblem(index=index, field="runid", message=f"'{event.type}' events need the runid extension attribute"))
    if event.type.startswith(TARGET_SCOPED_PREFIXES) and not event.target:
        problems.append(EventProblem(index=index, field="target", message=f"'{event.type}' events need the target extension attribute"))
    if event.type in _KNOWN_TYPES and not isinstance(event.data, dict):
        problems.append(EventProblem(index=index, field="data", message=f"'{event.type}' events need data to be a JSON object"))
    else:
        check_data = _DATA_VALIDATORS.get(event.type)
        if check_data is not None:
            try:
                check_data(event.data)
            except ValidationError as exc:
                problems.extend(_problems(exc, index, prefix="data."))
    return problems


def _fields_only_list_validator(model: type[BaseModel]) -> Any:
    """A validator of a list of ``model``'s data that checks what the model checks without building instances: the
    fast path only needs to know that every item passes (a failure sends the body to the exact path, which words
    the problems), and an instance per event cost half the check (docs/performance.md, eleventh session).

    The schema inside the model wrapper is used (its fields, and any before-validator of the model); a model whose
    schema has anything outside that wrapper (an after- or wrap-validator) or a custom ``__init__``/post-init is
    validated as the model, so no rule is ever skipped."""
    schema = model.__pydantic_core_schema__
    if schema["type"] != "model" or schema.get("custom_init") or schema.get("post_init"):
        return TypeAdapter(list[model]).validator.validate_python  # type: ignore[valid-type]
    return SchemaValidator({"type": "list", "items_schema": schema["schema"]}, schema.get("config")).validate_python


#: Each known type's ``data`` checks over a list of them (the fast path validates a request's data type by type).
_DATA_LIST_VALIDATORS = {kind: _fields_only_list_validator(model) for kind, model in _DATA_CHECKS.items()}


#: The envelope's validation without the model's payload rule (``CloudEvent._one_payload``, a Python call per event
#: that :func:`validate_json_fast` applies in the loop it runs anyway): the model's own core schema, inside that
#: rule's after-validator. A subclass overriding the rule would still call the override per event.
_ENVELOPE_SCHEMA: Any = CloudEvent.__pydantic_core_schema__["schema"]
assert _ENVELOPE_SCHEMA["type"] == "model" and _ENVELOPE_SCHEMA["cls"] is CloudEvent, "pydantic changed the model's schema"
#: Whole requests validated straight from their JSON by pydantic-core (parsing and the envelope in one call);
#: serialised as :class:`CloudEvent` s.
_BATCH = TypeAdapter(list[CloudEvent])
_validate_batch_json = SchemaValidator({"type": "list", "items_schema": _ENVELOPE_SCHEMA}).validate_json
_validate_event_json = SchemaValidator(_ENVELOPE_SCHEMA).validate_json


def validate_json_fast(raw: bytes, array: bool) -> list[CloudEvent] | None:
    """The events of a request body that is entirely valid, validated from its JSON in one call; None when the
    body needs the exact path (:func:`validate_event` per decoded item), which also words every problem: an
    invalid or time-less event, deep nesting, special numbers. Same outcome as that path for a valid body."""
    try:
        batch = _validate_batch_json(raw) if array else [_validate_event_json(raw)]
    except ValueError:  # pydantic's ValidationError, or malformed JSON: the exact path says which
        return None
    by_type: dict[str, list[Any]] = {}
    for event in batch:
        kind, data = event.type, event.data
        if (kind.startswith(RUN_SCOPED_PREFIXES) and not event.runid) or (kind.startswith(TARGET_SCOPED_PREFIXES) and not event.target):
            return None
        if data is None and kind in _KNOWN_TYPES:  # the payload rule (CloudEvent._one_payload) in short
            if event.data_base64 is not None:
                return None
            event.data = {}
        elif data is not None and event.data_base64 is not None:
            return None
        if kind in _DATA_LIST_VALIDATORS:
            by_type.setdefault(kind, []).append(event.data)
        elif kind in _KNOWN_TYPES and not isinstance(event.data, dict):
            return None
    try:
        for kind, payloads_of_kind in by_type.items():  # one call per type, not per event
            _DATA_LIST_VALIDATORS[kind](payloads_of_kind)
    except ValueError:
        return None
    payloads = [event.data for event in batch]
    payloads.extend(event.__pydantic_extra__ for event in batch if event.__pydantic_extra__)
    # Each data sits at level two, as in its event (extension values one level deeper than they are: stricter,
    # and a miss only sends the body to the exact path).
    if _deep_or_not_finite(payloads, MAX_DEPTH):
        return None
    return batch


def fill_scope_defaults(batch: Sequence[CloudEvent], namespace: str, target: str | None) -> None:
    """Give events that name no namespace ``namespace``, and (when given) events that name no target ``target``:
    what a credential implies (``principals.authorize``)."""
    # Set as pydantic's own handler sets a plain field (CloudEvent neither validates assignments nor is frozen),
    # without BaseModel.__setattr__'s dispatch: a third of the cost, paid for every event that names no namespace.
    for event in batch:
        if event.namespace is None:
            event.__dict__["namespace"] = namespace
            event.__pydantic_fields_set__.add("namespace")
        if target is not None and event.target is None:
            event.__dict__["target"] = target
            event.__pydantic_fields_set__.add("target")


def _deep_or_not_finite(value: list[Any], limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (as :func:`nests_deeper_than`) or holds a NaN or an infinite
    number: what ``json.loads`` as ingestion calls it refuses (``NaN``, ``Infinity``, ``1e999``), and pydantic-core's
    parser reads as floats."""
    # Exact type checks: parsed JSON holds no subclasses, and ``type(x) is`` costs a third of isinstance with a
    # union (this walks every value of every accepted event).
    level: list[Any] = [value]
    for _level in range(limit):
        deeper: list[Any] = []
        for node in level:
            for item in node.values() if type(node) is dict else node:
                kind = type(item)
                if kind is dict or kind is list:
                    deeper.append(item)
                elif kind is float and not isfinite(item):
                    return True
        if not deeper:
            return False
        level = deeper
    return True


def dump_batch_json(batch: list[CloudEvent]) -> bytes:
    """Events as one JSON array, each as the store keeps it (``model_dump_json(exclude_none=True)``)."""
    return _BATCH.dump_json(batch, exclude_none=True)
