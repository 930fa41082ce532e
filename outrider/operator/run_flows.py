"""The Run ↔ Job flows: build a Run's Job, adopt a team's Job, mirror a Job into its Run's status and lifecycle
events, cancel a Run whose Job was deleted. Called by the kopf wiring (handlers.py) with plain values, so they
know nothing of kopf; they write through the reconciler's status writer (conditions first, no lost updates)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from outrider.common import events, k8s, timefmt
from outrider.operator import conditions, events_client, jobs, kube, model, reconciler
from outrider.operator import runtime as runtime_mod
from outrider.operator.reconciler import failed_before_running, patch_run_status

Logger = logging.Logger | logging.LoggerAdapter[Any]
module_logger = logging.getLogger(__name__)


async def create_job(rt: runtime_mod.Runtime, body: Mapping[str, Any], run: model.RunInfo, logger: Logger) -> None:
    """Build the Run's Job from spec.template, suspended; a refusal retrying cannot fix fails the Run (JobCreateFailed)."""
    manifest = jobs.job_for_run(model._plain(body), credential=rt.signing_key is not None)
    try:
        await rt.client.create(kube.jobs(run.namespace), manifest)
    except kube.ApiError as exc:
        if isinstance(exc, kube.Conflict):
            existing = await rt.client.get(kube.jobs(run.namespace, run.name))
            labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
            if existing is None or labels.get(k8s.LABEL_RUN) == run.name:
                return  # created by an earlier event of ours; the job index will show it
            exc = kube.Invalid(409, f"a Job named {run.name} already exists and does not belong to this Run")
        if isinstance(exc, kube.Invalid) or exc.permanent:  # retrying cannot help: say so on the Run
            logger.error("the API server refused the Job for Run %s/%s: %s", run.namespace, run.name, exc)
            rt.kube_events.warn(body, reason=k8s.REASON_JOB_CREATE_FAILED, message=str(exc)[:1000])
            await patch_run_status(rt, run.namespace, run.name, failed_before_running(
                run, k8s.REASON_JOB_CREATE_FAILED, str(exc)[:1000], rt.clock()), seen=run)
            return
        raise
    # The one Event of a new Run (its creation time is in its metadata already): each Event is an API write.
    rt.kube_events.info(body, reason="JobCreated", message=f"Job {manifest['metadata']['name']} created suspended for Target {run.target}")




async def adopt(rt: runtime_mod.Runtime, body: Mapping[str, Any], namespace: str, name: str, logger: Logger) -> None:
    """A Job labelled outrider.dev/target that no Run owns: create the Run that mirrors it, then label the Job."""
    manifest = jobs.run_for_job(model._plain(body))
    try:
        await rt.client.create(kube.runs(namespace), manifest)
    except kube.Conflict:
        existing = await rt.client.get(kube.runs(namespace, name)) or {}
        if (existing.get("spec") or {}).get("jobName") != name:
            message = f"cannot adopt Job {name}: a Run of that name already exists for another Job"
            logger.warning(message)
            rt.kube_events.warn(body, reason="AdoptionConflict", message=message)
            return
    await rt.client.patch(kube.jobs(namespace, name), {"metadata": {"labels": {k8s.LABEL_RUN: name}}})
    suspended = bool((body.get("spec") or {}).get("suspend"))
    message = (f"adopted Job {name} into Run {name}; " +
               ("it was created suspended, so it waits for admission" if suspended else "it was already running"))
    logger.info(message)
    rt.kube_events.info(body, reason="Adopted", message=message)


async def mirror(rt: runtime_mod.Runtime, job: dict[str, Any], run: model.RunInfo, logger: Logger) -> None:
    """Copy what the Job says into the Run's status, and post the Run's lifecycle events."""
    state = jobs.state(job)
    if state.suspended and not state.finished:
        return  # held or drained: admission's business
    message = None
    if state.finished:
        message = await termination_message(rt, job)
    desired = jobs.run_status(job, message)
    phase = desired.get("phase")
    if phase is None:
        return
    now = rt.clock()
    current = run.status
    changed = {k: v for k, v in desired.items() if current.get(k) != v}
    if not changed:
        return
    # The mirror reports the Job, not the spec: its conditions carry the generation last observed, and it
    # does not touch observedGeneration.
    generation = run.observed_generation
    conds = current.get("conditions")
    if phase in (k8s.PHASE_RUNNING, k8s.PHASE_SUCCEEDED, k8s.PHASE_FAILED):
        running = phase == k8s.PHASE_RUNNING
        conds = conditions.set_condition(conds, type_=k8s.CONDITION_RUNNING, status=running,
                                         reason=desired["reason"], message=desired["message"], now=now,
                                         generation=generation)
    if phase == k8s.PHASE_RUNNING:
        stalled = (conditions.get(conds, k8s.CONDITION_STALLED) or {}).get("status") == "True"
        conds = conditions.active(conds, reason=k8s.REASON_STALLED if stalled else k8s.REASON_RUNNING,
                                  message=desired["message"], now=now, generation=generation)
    if phase in k8s.TERMINAL_PHASES:
        conds = conditions.set_condition(conds, type_=k8s.CONDITION_SUCCEEDED, status=phase == k8s.PHASE_SUCCEEDED,
                                         reason=desired["reason"], message=desired["message"], now=now,
                                         generation=generation)
    if (conditions.get(conds, k8s.CONDITION_ADMITTED) or {}).get("status") != "True":
        # The Job ran, so it was admitted (by us, or by whoever created it unsuspended).
        conds = conditions.set_condition(conds, type_=k8s.CONDITION_ADMITTED, status=True, reason=k8s.REASON_ADMITTED,
                                         message="the Job ran", now=now, generation=generation)
    shown = ("phase", "reason", "message")  # derived from the conditions by patch_run_status
    patch = {**{k: v for k, v in desired.items() if k not in shown}, "conditions": conds}
    if not await patch_run_status(rt, run.namespace, run.name, patch, seen=run):
        return
    ref = reconciler.ref(k8s.RUN_KIND, run.namespace, run.name, run.uid)
    common = {"target": run.target or None, "runid": run.name, "subject": f"runs/{run.namespace}/{run.name}"}
    if current.get("phase") != phase and phase == k8s.PHASE_RUNNING or (
            phase in k8s.TERMINAL_PHASES and not current.get("startTime") and desired.get("startTime")):
        rt.kube_events.info(ref, reason="Started", message=f"Job {job['metadata']['name']} is running")
        started = timefmt.parse_time(desired.get("startTime")) or now
        # The Job's start time in the id: a Run drained and admitted again starts again (a new event), while
        # re-seeing the same start (a restart, a replayed watch) stays one event.
        rt.emit(events_client.build(events.EventType.RUN_STARTED, id_parts=(run.uid, "started", desired.get("startTime") or ""), time=started,
                                    data={"job": job["metadata"]["name"]}, **common))
    if current.get("phase") != phase and phase == k8s.PHASE_SUCCEEDED:
        rt.kube_events.info(ref, reason=k8s.REASON_COMPLETED, message=f"succeeded in {desired.get('durationSeconds', '—')}s")
        rt.emit(events_client.build(events.EventType.RUN_SUCCEEDED, id_parts=(run.uid, "succeeded"),
                                    time=timefmt.parse_time(desired.get("completionTime")) or now,
                                    data={"duration_seconds": desired.get("durationSeconds"),
                                          "usage": desired.get("usage")}, **common))
    if current.get("phase") != phase and phase == k8s.PHASE_FAILED:
        rt.kube_events.warn(ref, reason=desired["reason"], message=desired.get("errorSummary") or desired["message"])
        rt.emit(events_client.build(events.EventType.RUN_FAILED, id_parts=(run.uid, "failed"),
                                    time=timefmt.parse_time(desired.get("completionTime")) or now,
                                    data={"error_type": desired["reason"],
                                          "message": desired.get("errorSummary") or desired["message"],
                                          "duration_seconds": desired.get("durationSeconds")}, **common))


async def termination_message(rt: runtime_mod.Runtime, job: dict[str, Any]) -> str | None:
    """The pod's termination message, when one of the Job's pods can be read; None otherwise."""
    meta = job["metadata"]
    try:
        pods = await rt.client.list(kube.pods(meta["namespace"]), label_selector=f"job-name={meta['name']}")
    except (kube.ApiError, OSError) as exc:
        module_logger.info("cannot read the pods of Job %s: %s", meta["name"], exc)
        return None
    mine = [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == meta["name"]
            or ((p.get("metadata") or {}).get("labels") or {}).get(k8s.LABEL_RUN) == (meta.get("labels") or {}).get(k8s.LABEL_RUN)]
    mine.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True)
    for pod in mine:
        message = jobs.termination_message(pod)
        if message:
            return message
    return None


async def job_gone(rt: runtime_mod.Runtime, namespace: str, run_name: str, run: model.RunInfo | None) -> None:
    """The Run's Job was deleted before it finished: the Run is Cancelled (JobDeleted)."""
    if run is None or run.terminal:
        return
    now = rt.clock()
    message = "the Run's Job was deleted before it finished"
    if await patch_run_status(rt, namespace, run_name, {
        "completionTime": timefmt.format_time(now),
        "conditions": conditions.set_condition(run.status.get("conditions"), type_=k8s.CONDITION_SUCCEEDED,
                                               status=False, reason=k8s.REASON_JOB_DELETED, message=message,
                                               now=now, generation=run.observed_generation),
    }):
        rt.kube_events.warn(reconciler.ref(k8s.RUN_KIND, namespace, run_name, run.uid), reason=k8s.REASON_JOB_DELETED,
                  message=message)
        rt.emit(events_client.build(events.EventType.RUN_CANCELLED, id_parts=(run.uid, "cancelled"), time=now,
                                    target=run.target or None, runid=run_name,
                                    subject=f"runs/{namespace}/{run_name}", data={"reason": k8s.REASON_JOB_DELETED}))
