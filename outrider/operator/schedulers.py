"""Scheduler CronJobs (labelled ``outrider.dev/scheduler``) follow the emergency stop: suspended while autonomy
drains, resumed (only those it suspended) when autonomy is back. No daemon per CronJob: a kopf daemon would put a
finalizer on a team's CronJob; instead they are swept on their own events and from the Target daemons after each
autonomy change."""

from __future__ import annotations

from collections.abc import Iterable

from outrider.common import k8s
from outrider.operator import kube, model
from outrider.operator import runtime as runtime_mod


async def apply(rt: runtime_mod.Runtime, cron: model.CronJobInfo) -> None:
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


async def sweep(rt: runtime_mod.Runtime, crons: Iterable[model.CronJobInfo]) -> None:
    """Apply the current autonomy to every scheduler CronJob, once per autonomy change (whichever daemon is first)."""
    version = rt.autonomy_version
    if rt.swept_version == version or not rt.autonomy_known:
        return
    rt.swept_version = version
    for cron in list(crons):
        await apply(rt, cron)
