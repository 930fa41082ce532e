"""The kopf wiring: the handlers that tie Runs, Jobs, Targets, CronJobs and the autonomy ConfigMap together. The
only module that knows kopf; the work is done by the flows it calls with plain values (run_flows, schedulers,
reconciler).

Started as a module — ``outrider operator`` runs kopf on ``outrider.operator.handlers`` in-process — never as a
script. The shape (docs/architecture.md, Operator section):

- indexes of Runs, Jobs and Targets, filled completely from the cluster before any handler runs;
- a Run event creates its Job, suspended, and wakes the Run's Target; a Run whose Target is missing is held;
- a Job event mirrors the Job into its Run's status (conditions, times, termination message) or, for a Job
  someone else created with ``outrider.dev/target``, adopts it by creating a Run (run_flows.py);
- one daemon per Target does admission, the breaker, drain and the Target's status (reconciler.py);
- scheduler CronJobs are suspended during an emergency stop and resumed afterwards (schedulers.py; no daemon).

Every write happens in a handler or daemon, so kopf peering (two replicas) pauses all of it on the standby.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import kopf

from outrider.common import events, k8s
from outrider.operator import events_client, kube, model, reconciler, run_flows, target_sweep
from outrider.operator import runtime as runtime_mod
from outrider.operator import schedulers as schedulers_mod
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
    rt.spawn(target_sweep.forget_deleted_while_away(rt), name="outrider-target-sweep")
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
        await run_flows.create_job(rt, body, run, logger)
    elif not spec.get("template") and not spec.get("jobName"):
        await reconciler.patch_run_status(rt, namespace, name, reconciler.failed_before_running(
            run, k8s.REASON_INVALID_SPEC, "the Run has neither spec.template nor spec.jobName", rt.clock()), seen=run)
        return
    if (namespace, run.target) not in targets_by_name:
        await reconciler.hold_orphan(rt, run)
    rt.wake(namespace, run.target)


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
            await run_flows.job_gone(rt, namespace, run_name, _one(runs_by_name, (namespace, run_name)))
        rt.wake(namespace, target)
        return
    if not run_name:
        await run_flows.adopt(rt, body, namespace, name, logger)
        return
    run = _one(runs_by_name, (namespace, run_name))
    if run is None:
        fetched = await rt.client.get(kube.runs(namespace, run_name))
        if fetched is None:
            rt.wake(namespace, target)
            return
        run = model.RunInfo.of(fetched)
    if not run.terminal:
        await run_flows.mirror(rt, model.job_view(body), run, logger)
    rt.wake(namespace, target)


def _one(index: kopf.Index[Any, Any], key: Any) -> Any:
    store = index.get(key)
    if not store:
        return None
    return next(iter(store))


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
                await schedulers_mod.sweep(rt, schedulers.get("all") or [])
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


@kopf.on.event(*CRONJOBS, labels={k8s.LABEL_SCHEDULER: kopf.PRESENT})
async def scheduler_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event.get("type") != "DELETED":
        await schedulers_mod.apply(_rt(memo), model.CronJobInfo.of(body))
