"""The kopf operator: the handlers that tie Runs, Jobs, Targets, CronJobs and the autonomy ConfigMap together.

Started as a module — ``outrider operator`` runs kopf on ``outrider.operator.handlers`` in-process — never as a
script. The shape (docs/architecture.md, Operator section):

- indexes of Runs, Jobs and Targets, filled completely from the cluster before any handler runs;
- a Run event creates its Job, suspended, and wakes the Run's Target; a Run whose Target is missing is held;
- a Job event mirrors the Job into its Run's status (phase, times, reason, termination message) or, for a Job
  someone else created with ``outrider.dev/target``, adopts it by creating a Run;
- one daemon per Target does admission, the breaker, drain and the Target's status (reconciler.py);
- scheduler CronJobs are suspended during an emergency stop and resumed afterwards (swept, no daemon).

Every write happens in a handler or daemon, so kopf peering (two replicas) pauses all of it on the standby.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import kopf

from outrider.common import events, k8s, timefmt
from outrider.operator import conditions, events_client, jobs, kube, model, reconciler
from outrider.operator import runtime as runtime_mod
from outrider.operator import settings as settings_mod

RUNS = (k8s.GROUP, k8s.VERSION, k8s.RUN_PLURAL)
TARGETS = (k8s.GROUP, k8s.VERSION, k8s.TARGET_PLURAL)
JOBS = ("batch", "v1", "jobs")
CRONJOBS = ("batch", "v1", "cronjobs")


def _rt(memo: Any) -> runtime_mod.Runtime:
    return memo["outrider_runtime"]  # type: ignore[no-any-return]


# --- lifecycle -------------------------------------------------------------------------------------------
@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    # Keep kopf's own bookkeeping in annotations of our group; it writes nothing to status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=k8s.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=k8s.GROUP)
    # Kubernetes Events go through our own recorder (kube_events.py: paced, aggregated, bounded); kopf's posting
    # is off, which also stops kopf posting its own log lines as Events (settings.posting.loggers, off already).
    settings.posting.enabled = False
    # No CRD/namespace scanning: the resources are known, and the RBAC stays minimal (docs/concepts/rbac.md).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    config = settings_mod.load()
    client = kube.Client(kube.load_config())
    rt = runtime_mod.Runtime(config, client)
    memo["outrider_runtime"] = rt
    await rt.start()
    logger.info("outrider operator: autonomy ConfigMap %s/%s, control plane %s", config.namespace,
                config.autonomy_configmap, config.url or "(none: events not sent)")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    rt = memo.get("outrider_runtime")
    if rt is not None:
        await rt.stop()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """The same credentials as the operator's own client (kube.load_config): in-cluster, else $KUBECONFIG."""
    config = kube.load_config()
    return kopf.ConnectionInfo(
        server=config.server, token=config.token, ca_path=config.ca_path, insecure=config.insecure,
        certificate_path=config.cert_path, private_key_path=config.key_path,
        default_namespace=config.default_namespace,
    )


@kopf.on.probe(id="autonomy")
def probe_autonomy(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    rt = memo.get("outrider_runtime")
    if rt is None:
        return {"known": False}
    return {"known": rt.autonomy_known, "enabled": rt.autonomy.enabled, "mode": rt.autonomy.mode,
            "reason": rt.autonomy.reason, "eventsBuffered": rt.sender.buffered, "eventsDropped": rt.sender.dropped}


# --- indexes ---------------------------------------------------------------------------------------------
# kopf types ``namespace`` as ``str | None``: None only for cluster-scoped objects. Runs, Targets, Jobs and
# CronJobs are all Namespaced (manifests/crds), so a None never comes; if one did, the object is not indexed
# and its handlers do nothing, rather than keying state on a None namespace.
# Coroutines, not plain functions: kopf runs a sync handler in its thread pool, and at 1,000 Runs the five index
# functions alone made ~26,000 thread hand-offs whose GIL contention slowed every other handler (profiled).
@kopf.index(*RUNS)
async def runs_by_target(body: kopf.Body, namespace: str | None, spec: kopf.Spec, **_: Any) -> dict[Any, model.RunInfo]:
    if namespace is None:
        return {}
    return {(namespace, str(spec.get("target") or "")): model.RunInfo.of(body)}


@kopf.index(*RUNS)
async def runs_by_name(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, model.RunInfo]:
    if namespace is None:
        return {}
    return {(namespace, name): model.RunInfo.of(body)}


@kopf.index(*JOBS, labels={k8s.LABEL_TARGET: kopf.PRESENT})
async def jobs_by_target(body: kopf.Body, namespace: str | None, labels: kopf.Labels,
                         **_: Any) -> dict[Any, model.JobInfo]:
    if namespace is None:
        return {}
    return {(namespace, labels[k8s.LABEL_TARGET]): model.JobInfo.of(body)}


@kopf.index(*JOBS, labels={k8s.LABEL_TARGET: kopf.PRESENT})
async def jobs_by_name(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, model.JobInfo]:
    if namespace is None:
        return {}
    return {(namespace, name): model.JobInfo.of(body)}


@kopf.index(*TARGETS)
async def targets_by_name(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, model.TargetInfo]:
    if namespace is None:
        return {}
    return {(namespace, name): model.TargetInfo.of(body)}


# --- Runs ------------------------------------------------------------------------------------------------
# kopf passes every index to every handler as a keyword argument named after it, but its callback Protocols
# cannot declare them (kopf's own TODO: "ParamSpec to support index type checking"): a handler that named an
# index as a parameter would not type-check as a kopf callback, so the indexes are read from ``**kwargs``.
@kopf.on.event(*RUNS)
async def run_event(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                    logger: kopf.Logger, **kwargs: Any) -> None:
    if namespace is None:
        return
    targets_by_name: kopf.Index[tuple[str, str], model.TargetInfo] = kwargs["targets_by_name"]
    jobs_by_name: kopf.Index[tuple[str, str], model.JobInfo] = kwargs["jobs_by_name"]
    rt = _rt(memo)
    run = model.RunInfo.of(body)
    if event.get("type") == "DELETED":
        rt.wake(namespace, run.target)
        return
    if run.phase is None and not run.status.get("reason"):
        rt.emit(events_client.build(
            events.EventType.RUN_CREATED, id_parts=(run.uid, "created"), time=run.created, target=run.target or None,
            runid=name, subject=f"runs/{namespace}/{name}",
            data={"namespace": namespace, "task": dict((body.get("spec") or {}).get("task") or {}),
                  "agent": (body.get("spec") or {}).get("agent"), "model": (body.get("spec") or {}).get("model"),
                  "adopted": (body.get("metadata", {}).get("labels") or {}).get(k8s.LABEL_ADOPTED) == "true"},
        ))
    if run.terminal:
        rt.wake(namespace, run.target)
        return
    spec = body.get("spec") or {}
    if spec.get("template") and not spec.get("jobName") and (namespace, name) not in jobs_by_name:
        await _create_job(rt, body, run, logger)
    elif not spec.get("template") and not spec.get("jobName"):
        await reconciler.patch_run_status(rt, namespace, name, reconciler.failed_before_running(
            run, k8s.REASON_INVALID_SPEC, "the Run has neither spec.template nor spec.jobName", rt.clock()), seen=run)
        return
    if (namespace, run.target) not in targets_by_name:
        await reconciler.hold_orphan(rt, run)
    rt.wake(namespace, run.target)


async def _create_job(rt: runtime_mod.Runtime, body: kopf.Body, run: model.RunInfo, logger: kopf.Logger) -> None:
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
            await reconciler.patch_run_status(rt, run.namespace, run.name, reconciler.failed_before_running(
                run, k8s.REASON_JOB_CREATE_FAILED, str(exc)[:1000], rt.clock()), seen=run)
            return
        raise
    # The one Event of a new Run (its creation time is in its metadata already): each Event is an API write.
    rt.kube_events.info(body, reason="JobCreated", message=f"Job {manifest['metadata']['name']} created suspended for Target {run.target}")


# --- Jobs ------------------------------------------------------------------------------------------------
@kopf.on.event(*JOBS, labels={k8s.LABEL_TARGET: kopf.PRESENT})
async def job_event(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, labels: kopf.Labels,
                    memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    if namespace is None:
        return
    runs_by_name: kopf.Index[tuple[str, str], model.RunInfo] = kwargs["runs_by_name"]
    rt = _rt(memo)
    target = labels[k8s.LABEL_TARGET]
    run_name = labels.get(k8s.LABEL_RUN)
    if event.get("type") == "DELETED":
        if run_name:
            await _job_gone(rt, namespace, run_name, runs_by_name)
        rt.wake(namespace, target)
        return
    if not run_name:
        await _adopt(rt, body, namespace, name, logger)
        return
    run = _one(runs_by_name, (namespace, run_name))
    if run is None:
        fetched = await rt.client.get(kube.runs(namespace, run_name))
        if fetched is None:
            rt.wake(namespace, target)
            return
        run = model.RunInfo.of(fetched)
    if not run.terminal:
        await _mirror(rt, model.job_view(body), run, logger)
    rt.wake(namespace, target)


def _one(index: kopf.Index[Any, Any], key: Any) -> Any:
    store = index.get(key)
    if not store:
        return None
    return next(iter(store))


async def _adopt(rt: runtime_mod.Runtime, body: kopf.Body, namespace: str, name: str, logger: kopf.Logger) -> None:
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


async def _mirror(rt: runtime_mod.Runtime, job: dict[str, Any], run: model.RunInfo, logger: kopf.Logger) -> None:
    """Copy what the Job says into the Run's status, and post the Run's lifecycle events."""
    state = jobs.state(job)
    if state.suspended and not state.finished:
        return  # held or drained: admission's business
    message = None
    if state.finished:
        message = await _termination_message(rt, job)
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
    if not await reconciler.patch_run_status(rt, run.namespace, run.name, patch, seen=run):
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


async def _termination_message(rt: runtime_mod.Runtime, job: dict[str, Any]) -> str | None:
    """The pod's termination message, when one of the Job's pods can be read; None otherwise."""
    meta = job["metadata"]
    try:
        pods = await rt.client.list(kube.pods(meta["namespace"]), label_selector=f"job-name={meta['name']}")
    except (kube.ApiError, OSError) as exc:
        logging.getLogger(__name__).info("cannot read the pods of Job %s: %s", meta["name"], exc)
        return None
    mine = [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == meta["name"]
            or ((p.get("metadata") or {}).get("labels") or {}).get(k8s.LABEL_RUN) == (meta.get("labels") or {}).get(k8s.LABEL_RUN)]
    mine.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True)
    for pod in mine:
        message = jobs.termination_message(pod)
        if message:
            return message
    return None


async def _job_gone(rt: runtime_mod.Runtime, namespace: str, run_name: str, runs_by_name: kopf.Index[Any, Any]) -> None:
    run = _one(runs_by_name, (namespace, run_name))
    if run is None or run.terminal:
        return
    now = rt.clock()
    message = "the Run's Job was deleted before it finished"
    if await reconciler.patch_run_status(rt, namespace, run_name, {
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


# --- Targets ---------------------------------------------------------------------------------------------
@kopf.on.event(*TARGETS)
async def target_event(event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo,
                       **kwargs: Any) -> None:
    if namespace is None:
        return
    runs_by_target: kopf.Index[tuple[str, str], model.RunInfo] = kwargs["runs_by_target"]
    rt = _rt(memo)
    if event.get("type") == "DELETED":
        uid = str((event.get("object") or {}).get("metadata", {}).get("uid") or "")
        rt.forget(namespace, name, uid)  # its daemon stops itself: no finalizer waits for it
        for run in list(runs_by_target.get((namespace, name)) or []):
            await reconciler.hold_orphan(rt, run)
        # The control plane drops the Target from its status and its series from /metrics.
        rt.emit(events_client.build(events.EventType.TARGET_DELETED, id_parts=(uid, "deleted"), time=rt.clock(),
                                    target=name, subject=f"targets/{namespace}/{name}"))
        return
    rt.wake(namespace, name)


def _without_finalizer(fn: Any) -> Any:
    """Register ``fn``'s kopf daemon without kopf's finalizer.

    kopf puts a finalizer on every object that has a daemon, so that it can stop the daemon before the object
    goes; a Target deleted while no operator runs would then hang in Terminating. The Target daemon needs no such
    wait: it holds nothing to clean up, and it stops itself when ``target_event`` sees the Target DELETED (the uid
    in ``Runtime.deleted``). kopf's decorator has no option for this, so its registered handler is replaced with
    the same handler not requiring a finalizer; an existing Target that carries the old finalizer has it removed
    by kopf. Fails at import if kopf's registry changed shape (tests/operator/test_operator_target_deletion.py)."""
    spawning = kopf.get_default_registry()._spawning
    found = [i for i, handler in enumerate(spawning._handlers) if handler.fn is fn]
    if len(found) != 1:
        raise RuntimeError(f"expected one kopf daemon for {fn.__name__}, found {len(found)}")
    spawning._handlers[found[0]] = dataclasses.replace(spawning._handlers[found[0]], requires_finalizer=False)
    return fn


@_without_finalizer
@kopf.daemon(*TARGETS, cancellation_timeout=5.0)
async def target_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                        logger: kopf.Logger, **kwargs: Any) -> None:
    """Admission, breaker, drain and status for one Target; sleeps until woken or until its cooldown ends, and
    stops when the Target is deleted (or this replica is paused by peering)."""
    if namespace is None:
        return
    uid = str(body.get("metadata", {}).get("uid") or "")
    runs_by_target: kopf.Index[tuple[str, str], model.RunInfo] = kwargs["runs_by_target"]
    jobs_by_target: kopf.Index[tuple[str, str], model.JobInfo] = kwargs["jobs_by_target"]
    schedulers: kopf.Index[str, model.CronJobInfo] = kwargs["schedulers"]
    rt = _rt(memo)
    rec = reconciler.TargetReconciler.for_target(rt, body)
    wake = rt.wake_event(namespace, name)
    failures = 0
    key = (namespace, name)
    try:
        while not stopped and uid not in rt.deleted:
            wake.clear()
            try:
                await sweep_schedulers(rt, schedulers)
                deadline = await rec.reconcile(body, list(runs_by_target.get(key) or []),
                                               list(jobs_by_target.get(key) or []))
                failures = 0
                timeout = max(0.0, (deadline - rt.clock()).total_seconds()) + 0.01 if deadline else None
            except Exception as exc:  # noqa: BLE001 - keep the daemon alive; retry with backoff
                failures += 1
                timeout = min(30.0, 0.2 * 2 ** min(failures, 8))
                logger.warning("reconcile of Target %s/%s failed (%r); retrying in %.1fs", namespace, name, exc, timeout)
                rec.last_status = None
            if uid in rt.deleted:
                break
            await _sleep(wake, stopped, timeout)
    finally:
        rt.deleted.discard(uid)
        # Stopped: the Target is gone, or this replica was paused by peering. Either way its numbers are no
        # longer this replica's to report (a standby exports no Target series rather than stale ones).
        rt.view.targets.pop(key, None)


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float | None) -> None:
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# --- Scheduler CronJobs ----------------------------------------------------------------------------------
# No daemon per CronJob: a kopf daemon puts a finalizer on its object, and a team's CronJob must not hang in
# Terminating because the operator is down. Instead an index of scheduler CronJobs is swept (a) on any event of
# one of them and (b) from the Target daemons after each autonomy change — both pause on a standby peer.
@kopf.index(*CRONJOBS, labels={k8s.LABEL_SCHEDULER: kopf.PRESENT})
async def schedulers(body: kopf.Body, **_: Any) -> dict[Any, model.CronJobInfo]:
    return {"all": model.CronJobInfo.of(body)}


async def apply_scheduler(rt: runtime_mod.Runtime, cron: model.CronJobInfo) -> None:
    """Suspend a scheduler CronJob during an emergency stop; resume it (only if we suspended it) afterwards."""
    if not rt.autonomy_known:
        return
    ref = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"namespace": cron.namespace, "name": cron.name}}
    if rt.autonomy.draining and not cron.suspended:
        await rt.client.patch(kube.cronjobs(cron.namespace, cron.name), {
            "metadata": {"annotations": {k8s.ANNOTATION_SCHEDULER_DRAINED: "true"}}, "spec": {"suspend": True}})
        rt.kube_events.warn(ref, reason=k8s.REASON_DRAINED, message="emergency stop: scheduler CronJob suspended")
    elif rt.autonomy.enabled and cron.drained:
        await rt.client.patch(kube.cronjobs(cron.namespace, cron.name), {
            "metadata": {"annotations": {k8s.ANNOTATION_SCHEDULER_DRAINED: None}}, "spec": {"suspend": False}})
        rt.kube_events.info(ref, reason="Resumed", message="autonomy enabled: scheduler CronJob resumed")


async def sweep_schedulers(rt: runtime_mod.Runtime, index: kopf.Index[str, model.CronJobInfo]) -> None:
    """Apply the current autonomy to every scheduler CronJob, once per autonomy change (whichever daemon is first)."""
    version = rt.autonomy_version
    if rt.swept_version == version or not rt.autonomy_known:
        return
    rt.swept_version = version
    for cron in list(index.get("all") or []):
        await apply_scheduler(rt, cron)


@kopf.on.event(*CRONJOBS, labels={k8s.LABEL_SCHEDULER: kopf.PRESENT})
async def scheduler_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event.get("type") != "DELETED":
        await apply_scheduler(_rt(memo), model.CronJobInfo.of(body))
