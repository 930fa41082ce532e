"""Immutable snapshots of Runs, Jobs and Targets as the operator's kopf indexes hold them.

kopf keeps these indexes current from its watches and fills them completely before any handler runs, so
counts taken from them after a restart are the cluster's counts — which is what keeps ``maxConcurrentRuns``
true across restarts. Small frozen values, not live bodies, so a reconcile pass sees one consistent picture.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from outrider.common import k8s, timefmt
from outrider.operator import admission
from outrider.operator import budget as budget_mod
from outrider.operator import jobs as jobs_mod

#: How far along a Run is; a status write never moves it down this order (terminal phases are final).
PHASE_ORDER: dict[str | None, int] = {None: 0, k8s.PHASE_PENDING: 0, k8s.PHASE_ADMITTED: 1, k8s.PHASE_RUNNING: 2,
                                      k8s.PHASE_SUCCEEDED: 3, k8s.PHASE_FAILED: 3, k8s.PHASE_CANCELLED: 3}


def phase_moves_back(current: str | None, new: str | None, *, job_suspended: bool = False) -> bool:
    """Whether writing phase ``new`` over ``current`` moves a Run backwards.

    A terminal phase is final (not even another terminal phase replaces it). Otherwise the order is
    Pending < Admitted < Running — except for a write that follows the Job being suspended (held, drained,
    admitted again): a suspended Job really does put the Run back before Running, so only terminal is kept.
    """
    if new is None or new == current:
        return False
    if current in k8s.TERMINAL_PHASES:
        return True
    if job_suspended:
        return False
    return PHASE_ORDER.get(new, 0) < PHASE_ORDER.get(current, 0)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    namespace: str
    name: str
    uid: str
    target: str
    created: dt.datetime
    generation: int
    phase: str | None
    reason: str | None
    message: str | None
    status: dict[str, Any]
    has_template: bool
    job_name: str | None
    #: The resourceVersion this view of the Run was read at: status writes send it as their precondition.
    resource_version: str | None = None
    #: spec.activeDeadlineSeconds (bounds the run credential's lifetime).
    active_deadline_seconds: int | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in k8s.TERMINAL_PHASES

    @property
    def observed_generation(self) -> int | None:
        """The spec generation the status was last decided from (admission, Job build, InvalidSpec); None before."""
        value = self.status.get("observedGeneration")
        return value if isinstance(value, int) else None

    @classmethod
    def of(cls, body: Any) -> RunInfo:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        status = dict(body.get("status") or {})
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta.get("name") or "",
            uid=meta.get("uid") or "",
            target=str(spec.get("target") or ""),
            created=timefmt.parse_time(meta.get("creationTimestamp")) or dt.datetime.now(dt.UTC),
            generation=int(meta.get("generation") or 0),
            phase=status.get("phase"),
            reason=status.get("reason"),
            message=status.get("message"),
            status=_plain(status),
            has_template=bool(spec.get("template")),
            job_name=spec.get("jobName") or (spec.get("template") and meta.get("name")) or None,
            resource_version=meta.get("resourceVersion") or None,
            active_deadline_seconds=spec.get("activeDeadlineSeconds") if isinstance(spec.get("activeDeadlineSeconds"), int) else None,
        )


@dataclasses.dataclass(frozen=True)
class JobInfo:
    namespace: str
    name: str
    run: str | None  # the outrider.dev/run label
    target: str
    state: jobs_mod.JobState
    probe: bool
    drained: bool
    admitted_by_operator: bool  # carries outrider.dev/admitted-at

    @classmethod
    def of(cls, body: Any) -> JobInfo:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta.get("name") or "",
            run=labels.get(k8s.LABEL_RUN),
            target=labels.get(k8s.LABEL_TARGET) or "",
            state=jobs_mod.state(job_view(body)),
            probe=annotations.get(k8s.ANNOTATION_PROBE) == "true",
            drained=annotations.get(k8s.ANNOTATION_DRAINED) == "true",
            admitted_by_operator=bool(annotations.get(k8s.ANNOTATION_ADMITTED_AT)),
        )


@dataclasses.dataclass(frozen=True)
class CronJobInfo:
    namespace: str
    name: str
    suspended: bool
    drained: bool  # suspended by the operator's emergency stop

    @classmethod
    def of(cls, body: Any) -> CronJobInfo:
        meta = body.get("metadata") or {}
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta.get("name") or "",
            suspended=bool((body.get("spec") or {}).get("suspend")),
            drained=(meta.get("annotations") or {}).get(k8s.ANNOTATION_SCHEDULER_DRAINED) == "true",
        )


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    namespace: str
    name: str
    limits: admission.TargetLimits
    failure_threshold: int
    cooldown_seconds: int
    generation: int
    budget: budget_mod.Limits | None = None  # spec.budget; None: the Target has no budget of its own
    watchdog: dict[str, Any] | None = None  # spec.watchdog as written (operator/watchdog.py reads it)

    @classmethod
    def of(cls, body: Any) -> TargetInfo:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        cb = spec.get("circuitBreaker") or {}
        raw_prs = (meta.get("annotations") or {}).get(k8s.ANNOTATION_OPEN_PRS)
        try:
            open_prs: int | None = int(raw_prs) if raw_prs is not None else None
            if open_prs is not None and open_prs < 0:
                open_prs = None
        except ValueError:
            open_prs = None
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta.get("name") or "",
            limits=admission.TargetLimits(
                paused=bool(spec.get("paused", False)),
                max_concurrent_runs=_positive(spec.get("maxConcurrentRuns"), 1),
                max_open_prs=_positive(spec.get("maxOpenPRs"), 2),
                open_prs=open_prs,
            ),
            failure_threshold=_positive(cb.get("failureThreshold"), 2),
            cooldown_seconds=_positive(cb.get("cooldownSeconds"), 1800),
            generation=int(meta.get("generation") or 0),
            budget=budget_mod.from_spec(spec.get("budget")),
            watchdog=spec.get("watchdog") if isinstance(spec.get("watchdog"), dict) else None,
        )


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default


def job_view(body: Any) -> dict[str, Any]:
    """What the operator reads of a Job (metadata, ``spec.suspend``, status), as plain dicts.

    Not the whole body: copying the pod template of every Job on every event of it was ~1.4 s of the operator's
    CPU in a 1,000-Run bench profile, and nothing but adoption (which copies the whole Job itself) reads it.
    """
    return {"metadata": _plain(body.get("metadata") or {}),
            "spec": {"suspend": (body.get("spec") or {}).get("suspend")},
            "status": _plain(body.get("status") or {})}


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (kopf bodies are live views)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
