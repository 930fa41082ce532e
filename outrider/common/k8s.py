"""Kubernetes names every part of Outrider shares: the CRD group, kinds and plurals, label keys, reason codes.

The operator writes these names, the Helm chart and the console read them, alerts and runbooks quote them.
Keeping them here, once, means a rename is one edit and a typo is an import error instead of a silent
mismatch. Reasons are stable CamelCase identifiers (Kubernetes API conventions): docs, alerts and the
console use them by name, so treat a change to one as a breaking change.
"""

from __future__ import annotations

from typing import Final

# --- API group, version, kinds -------------------------------------------------------------------------
GROUP: Final = "outrider.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

RUN_KIND: Final = "Run"
RUN_PLURAL: Final = "runs"
RUN_SINGULAR: Final = "run"
TARGET_KIND: Final = "Target"
TARGET_PLURAL: Final = "targets"
TARGET_SINGULAR: Final = "target"

#: Resource strings in kopf's ``group/version/plural`` form.
RUN_RESOURCE: Final = f"{GROUP}/{VERSION}/{RUN_PLURAL}"
TARGET_RESOURCE: Final = f"{GROUP}/{VERSION}/{TARGET_PLURAL}"

#: The CRD files, relative to the repository root (the one source; the Helm chart copies them).
CRD_FILES: Final = {
    RUN_KIND: "manifests/crds/outrider.dev_runs.yaml",
    TARGET_KIND: "manifests/crds/outrider.dev_targets.yaml",
}

# --- Labels and annotations ----------------------------------------------------------------------------
#: On a Job (and its pods): the Run it belongs to.
LABEL_RUN: Final = f"{GROUP}/run"
#: On a Job or Run: the Target (name, in the same namespace) it works on. A Job with only this label,
#: created by someone else, is adopted: the operator creates a Run that mirrors it.
LABEL_TARGET: Final = f"{GROUP}/target"
#: On a CronJob: it schedules agent runs, so the emergency stop (autonomy mode ``drain``) suspends it.
LABEL_SCHEDULER: Final = f"{GROUP}/scheduler"
#: On a Run created by adoption: "true". Tells people the Job came first.
LABEL_ADOPTED: Final = f"{GROUP}/adopted"
#: On the Job: the operator suspended it for a drain (so it is not confused with a never-admitted Job).
ANNOTATION_DRAINED: Final = f"{GROUP}/drained"
ANNOTATION_STOPPED: Final = f"{GROUP}/stopped"  # a Job the watchdog suspended: the reason (NoProgress)
#: On a CronJob: the operator suspended it for a drain.
ANNOTATION_SCHEDULER_DRAINED: Final = f"{GROUP}/drained"
#: On a Job: the operator admitted it (RFC 3339 time). Counted as active from cluster state after a restart.
ANNOTATION_ADMITTED_AT: Final = f"{GROUP}/admitted-at"
#: On a Target: how many of its pull requests are open, reported by whatever tracks them (a bot, the control
#: plane, a person with kubectl annotate). Copied to status.openPRs; absent means unknown (no MaxOpenPRs hold).
ANNOTATION_OPEN_PRS: Final = f"{GROUP}/open-prs"
#: On a Job: the admission was the half-open probe of its Target's breaker.
ANNOTATION_PROBE: Final = f"{GROUP}/probe"

# --- The autonomy ConfigMap ----------------------------------------------------------------------------
AUTONOMY_CONFIGMAP_DEFAULT: Final = "outrider-autonomy"
AUTONOMY_KEY_ENABLED: Final = "enabled"  # "true" | "false"
AUTONOMY_KEY_REASON: Final = "reason"  # free text, shown on held Runs
AUTONOMY_KEY_MODE: Final = "mode"  # "hold" | "drain"
AUTONOMY_KEY_BUDGET_HOUR: Final = "budgetUsdPerHour"  # global budget, USD per rolling hour (optional)
AUTONOMY_KEY_BUDGET_DAY: Final = "budgetUsdPerDay"  # global budget, USD per rolling day (optional)
AUTONOMY_KEY_PROGRESS_TIMEOUT: Final = "progressTimeoutSeconds"  # the watchdog's default for every Target (optional)
AUTONOMY_MODE_HOLD: Final = "hold"
AUTONOMY_MODE_DRAIN: Final = "drain"
AUTONOMY_MODES: Final = (AUTONOMY_MODE_HOLD, AUTONOMY_MODE_DRAIN)

# --- Run phases ----------------------------------------------------------------------------------------
PHASE_PENDING: Final = "Pending"
PHASE_ADMITTED: Final = "Admitted"
PHASE_RUNNING: Final = "Running"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"
PHASE_CANCELLED: Final = "Cancelled"
RUN_PHASES: Final = (PHASE_PENDING, PHASE_ADMITTED, PHASE_RUNNING, PHASE_SUCCEEDED, PHASE_FAILED, PHASE_CANCELLED)
TERMINAL_PHASES: Final = (PHASE_SUCCEEDED, PHASE_FAILED, PHASE_CANCELLED)

# --- Condition types -----------------------------------------------------------------------------------
CONDITION_ADMITTED: Final = "Admitted"
CONDITION_RUNNING: Final = "Running"
CONDITION_SUCCEEDED: Final = "Succeeded"
CONDITION_READY: Final = "Ready"  # on Targets: health is Healthy or Idle
CONDITION_STALLED: Final = "Stalled"  # on Runs: True while running without progress (operator/watchdog.py)
CONDITION_ADMITTING: Final = "Admitting"  # on Targets: True while it may admit Runs (kueue's ClusterQueue Active)

# --- Target health and breaker states ------------------------------------------------------------------
HEALTH_HEALTHY: Final = "Healthy"
HEALTH_IDLE: Final = "Idle"
HEALTH_BLOCKED: Final = "Blocked"
HEALTH_FAILED: Final = "Failed"
HEALTH_PAUSED: Final = "Paused"
HEALTHS: Final = (HEALTH_HEALTHY, HEALTH_IDLE, HEALTH_BLOCKED, HEALTH_FAILED, HEALTH_PAUSED)

BREAKER_CLOSED: Final = "Closed"
BREAKER_OPEN: Final = "Open"
BREAKER_HALF_OPEN: Final = "HalfOpen"
BREAKER_STATES: Final = (BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN)

# --- Reasons (held Runs, Target health, Run outcomes) --------------------------------------------------
# Why a Run is held (condition Admitted=False). Exactly one per held Run.
REASON_AUTONOMY_PAUSED: Final = "AutonomyPaused"
REASON_CONFIG_MISSING: Final = "ConfigMissing"  # autonomy ConfigMap absent: fail closed
REASON_CONFIG_INVALID: Final = "ConfigInvalid"  # autonomy ConfigMap unparseable: fail closed
REASON_TARGET_PAUSED: Final = "TargetPaused"
REASON_TARGET_NOT_FOUND: Final = "TargetNotFound"
REASON_CIRCUIT_OPEN: Final = "CircuitOpen"
REASON_CONCURRENCY_LIMIT: Final = "ConcurrencyLimit"
REASON_MAX_OPEN_PRS: Final = "MaxOpenPRs"  # also a Target health reason (Blocked)
REASON_BUDGET_EXCEEDED: Final = "BudgetExceeded"  # the Target's or the global LLM spend reached its limit
REASON_BUDGET_UNKNOWN: Final = "BudgetUnknown"  # the spend cannot be read and the Target has a budget: fail closed
REASON_BUDGET_PACED: Final = "BudgetPaced"  # even pacing: the next admission is not due yet
HOLD_REASONS: Final = (
    REASON_AUTONOMY_PAUSED,
    REASON_CONFIG_MISSING,
    REASON_CONFIG_INVALID,
    REASON_TARGET_PAUSED,
    REASON_TARGET_NOT_FOUND,
    REASON_CIRCUIT_OPEN,
    REASON_MAX_OPEN_PRS,
    REASON_BUDGET_EXCEEDED,
    REASON_BUDGET_UNKNOWN,
    REASON_BUDGET_PACED,
    REASON_CONCURRENCY_LIMIT,
)
# Admission granted.
REASON_ADMITTED: Final = "Admitted"
REASON_PROBE_ADMITTED: Final = "ProbeAdmitted"  # the single half-open probe
# Target health reasons besides the above.
REASON_PROBE_FAILED: Final = "ProbeFailed"  # health Failed: tripped again straight after a half-open probe
REASON_RUNS_ACTIVE: Final = "RunsActive"  # health Healthy
REASON_NO_RUNS: Final = "NoRuns"  # health Idle
REASON_DRAINED: Final = "Drained"  # a running Job suspended by the emergency stop
# Run outcomes (from the Job). Kubernetes' own Job failure reasons pass through unchanged
# (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy, ...).
REASON_COMPLETED: Final = "Completed"
REASON_JOB_FAILED: Final = "JobFailed"  # the Job failed without a reason of its own
REASON_JOB_DELETED: Final = "JobDeleted"  # the Run's Job disappeared before it finished
REASON_JOB_CREATE_FAILED: Final = "JobCreateFailed"  # the API server refused the Job built from spec.template
REASON_INVALID_SPEC: Final = "InvalidSpec"  # the Run has neither spec.template nor spec.jobName
REASON_NO_PROGRESS: Final = "NoProgress"  # the watchdog: no event of the run for progressTimeoutSeconds
REASON_PROGRESSING: Final = "Progressing"  # Stalled=False: events arrive again
# Succeeded=Unknown while a Run is active: where it is.
REASON_PENDING: Final = "Pending"  # not running yet (held, or admitted and its Job not started)
REASON_RUNNING: Final = "Running"
REASON_STALLED: Final = "Stalled"  # running, without progress (the watchdog)
REASON_CAN_ADMIT: Final = "CanAdmit"  # Admitting=True
# A Run whose Succeeded=False has one of these reasons was cancelled, not failed (phase Cancelled).
CANCELLED_REASONS: Final = (REASON_JOB_DELETED,)
# A Target's health word follows from its Ready condition's reason (conditions.target_health).
HEALTH_BY_REASON: Final = {
    REASON_TARGET_PAUSED: HEALTH_PAUSED, REASON_AUTONOMY_PAUSED: HEALTH_PAUSED,
    REASON_CONFIG_MISSING: HEALTH_PAUSED, REASON_CONFIG_INVALID: HEALTH_PAUSED,
    REASON_PROBE_FAILED: HEALTH_FAILED,
    REASON_CIRCUIT_OPEN: HEALTH_BLOCKED, REASON_MAX_OPEN_PRS: HEALTH_BLOCKED,
    REASON_BUDGET_EXCEEDED: HEALTH_BLOCKED, REASON_BUDGET_UNKNOWN: HEALTH_BLOCKED,
    REASON_NO_RUNS: HEALTH_IDLE,
    REASON_RUNS_ACTIVE: HEALTH_HEALTHY,
}
