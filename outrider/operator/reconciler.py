"""One Target's reconcile pass: count finished Runs into the breaker, drain, admit or hold, write status.

Each Target has one kopf daemon (handlers.py) that runs :meth:`TargetReconciler.reconcile` whenever something
it depends on changes — one of its Runs or Jobs, the Target itself, the autonomy ConfigMap — and when its
breaker's cooldown ends (the daemon sleeps until then: a timer, not polling). Being the only writer of its
Target's ``status.breaker`` and the only one that unsuspends its Jobs, the daemon can keep what it has just
done in memory until the watches show it, so a pass that runs before the cluster echoes the previous one's
writes neither admits twice nor counts a failure twice. On a restart that memory is rebuilt from the cluster
(Jobs' ``suspend``, Runs' ``status.breakerRecorded``, ``Target.status.breaker``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from outrider.common import events, k8s, timefmt
from outrider.operator import (
    admission,
    conditions,
    events_client,
    health,
    kube,
    metrics,
    model,
    run_credentials,
    watchdog,
)
from outrider.operator import breaker as breaker_mod
from outrider.operator import budget as budget_mod
from outrider.operator import runtime as runtime_mod

logger = logging.getLogger("outrider.operator.reconciler")


def ref(kind: str, namespace: str, name: str, uid: str | None = None) -> dict[str, Any]:
    """A minimal object reference for the Kubernetes Events the recorder (``kube_events``) posts about an object."""
    api = "batch/v1" if kind == "Job" else k8s.API_VERSION
    return {"apiVersion": api, "kind": kind, "metadata": {"namespace": namespace, "name": name, "uid": uid}}


#: How often the watchdog looks at a Stalled Run (or one it could not judge) for progress coming back.
WATCHDOG_RECHECK_SECONDS = 30


def _admitting(h: Any, *, pending: int, active: int, max_runs: int) -> dict[str, Any]:
    """The Target's ``Admitting`` condition (kueue's ClusterQueue ``Active``): may a Run of it be admitted now, and
    if not, the one reason why (AutonomyPaused, TargetPaused, CircuitOpen, MaxOpenPRs, BudgetExceeded, ...,
    ConcurrencyLimit)."""
    if h.health in (k8s.HEALTH_PAUSED, k8s.HEALTH_BLOCKED, k8s.HEALTH_FAILED):
        return {"status": False, "reason": h.reason, "message": h.message}
    if pending and active >= max_runs:
        return {"status": False, "reason": k8s.REASON_CONCURRENCY_LIMIT,
                "message": f"{active} of {max_runs} Runs active; {pending} waiting for a slot"}
    return {"status": True, "reason": k8s.REASON_CAN_ADMIT, "message": "Runs are admitted as they come"}


def _stalled(run: model.RunInfo) -> bool:
    found = conditions.get(run.status.get("conditions"), k8s.CONDITION_STALLED)
    return found is not None and found.get("status") == "True"


def failed_before_running(run: model.RunInfo, reason: str, message: str, now: dt.datetime) -> dict[str, Any]:
    """The status of a Run that fails before its Job could run (InvalidSpec, JobCreateFailed): the Succeeded=False
    condition that says why (so phase Failed). Decided from the spec, so it earns observedGeneration."""
    return {
        "observedGeneration": run.generation,
        "completionTime": timefmt.format_time(now),
        "conditions": conditions.set_condition(run.status.get("conditions"), type_=k8s.CONDITION_SUCCEEDED, status=False,
                                               reason=reason, message=message, now=now, generation=run.generation),
    }


def held_status(run: model.RunInfo, reason: str, message: str, now: dt.datetime) -> dict[str, Any]:
    """Admitted=False with the hold reason (so phase Pending), Succeeded=Unknown/Pending, and Running=False when a
    drain stopped a running Job. Admission read the spec to decide, so it earns observedGeneration."""
    conds = conditions.set_condition(run.status.get("conditions"), type_=k8s.CONDITION_ADMITTED, status=False,
                                     reason=reason, message=message, now=now, generation=run.generation)
    if (conditions.get(conds, k8s.CONDITION_RUNNING) or {}).get("status") == "True":
        conds = conditions.set_condition(conds, type_=k8s.CONDITION_RUNNING, status=False, reason=reason, message=message,
                                         now=now, generation=run.generation)
    return {
        "observedGeneration": run.generation,
        "conditions": conditions.active(conds, reason=k8s.REASON_PENDING, message=f"held: {message}", now=now,
                                        generation=run.generation),
    }


async def patch_run_status(rt: runtime_mod.Runtime, namespace: str, name: str, status: dict[str, Any], *,
                           job_suspended: bool = False, seen: model.RunInfo | None = None) -> bool:
    """Merge-patch a Run's status; False when the Run is gone or the write would move its phase backwards.

    Writers say what they decided as conditions; ``phase``, ``reason`` and ``message`` are derived from the
    conditions the Run ends up with (:func:`conditions.run_display`), never written on their own.

    Callers decide from the kopf index, which can lag the cluster (e.g. the Job mirror has just written
    ``Running`` and the watch has not echoed it yet). So a write of conditions is sent with the caller's
    resourceVersion as a precondition: a write landing in between makes the server answer 409, and the write is
    made again on the Run as the server has it now:

    - conditions are merged, not replaced: a merge patch replaces the whole list, so a list built from a stale
      view would undo what another writer set (``Admitted=True`` lost to a ``Running`` write that still saw
      ``Admitted=False``). Only the condition types the caller changed from its view are applied onto the fresh
      list (:func:`conditions.rebase`), kueue's "re-apply the mutation to the fresh object";
    - the phase derived from the merged list is checked against the fresh phase (model.phase_moves_back).

    The first attempt trusts ``seen`` (the caller's view, when it carries a resourceVersion) and so costs one
    request instead of a GET and a PATCH; only a 409 (the view was stale) costs the GET.
    """
    if "phase" in status:
        raise ValueError("a Run's phase is derived from its conditions; write the conditions")
    url = kube.runs(namespace, name, "status")
    mine = status.get("conditions")
    base = seen.status.get("conditions") if seen is not None else None
    fresh: dict[str, Any] | None = None
    if seen is not None and seen.resource_version:
        fresh = {"metadata": {"resourceVersion": seen.resource_version}, "status": {"phase": seen.phase, "conditions": base}}
    for _attempt in range(5):
        body: dict[str, Any] = {"status": status}
        if mine is not None:
            trusted_view = fresh is not None
            if fresh is None:
                fresh = await rt.client.get(kube.runs(namespace, name))
                if fresh is None:
                    return False
            current = fresh.get("status") or {}
            merged = conditions.rebase(base, mine, current.get("conditions"))
            display = conditions.run_display(merged)
            if display["phase"] is None:
                display = {}  # nothing decides a phase yet: leave the display fields as they are
            if model.phase_moves_back(current.get("phase"), display.get("phase"), job_suspended=job_suspended):
                if trusted_view:
                    fresh = None  # refused on the caller's view: refuse only on the server's
                    continue
                logger.info("not setting Run %s/%s back from %s to %s (the index lagged)", namespace, name,
                            current.get("phase"), display.get("phase"))
                return False
            body = {"status": {**status, "conditions": merged, **display}}
            version = (fresh.get("metadata") or {}).get("resourceVersion")
            if version:
                body["metadata"] = {"resourceVersion": version}
            fresh = None  # a 409 means this version is stale: read the Run again
        try:
            await rt.client.patch(url, body)
        except kube.NotFound:
            return False
        except kube.Conflict:
            if mine is not None:
                continue  # changed since that version: write again onto the newer Run
            raise
        return True
    raise kube.Conflict(409, f"Run {namespace}/{name} kept changing while its status was written")


async def hold_orphan(rt: runtime_mod.Runtime, run: model.RunInfo) -> None:
    """A Run whose Target does not exist: held with the first applicable reason (autonomy, then TargetNotFound)."""
    if run.terminal or not rt.autonomy_known:
        return
    now = rt.clock()
    (decision,) = admission.decide([admission.Candidate(run.name, run.created)], autonomy=rt.autonomy, target=None,
                                   breaker=breaker_mod.Breaker(), active=0, now=now)
    if ((run.phase, run.reason, run.message) == (k8s.PHASE_PENDING, decision.reason, decision.message)
            and run.observed_generation == run.generation):
        return
    if await patch_run_status(rt, run.namespace, run.name, held_status(run, decision.reason, decision.message, now),
                              job_suspended=True, seen=run):
        rt.kube_events.info(ref(k8s.RUN_KIND, run.namespace, run.name, run.uid), reason=decision.reason, message=decision.message)


@dataclasses.dataclass
class TargetReconciler:
    rt: runtime_mod.Runtime
    namespace: str
    name: str
    breaker: breaker_mod.Breaker
    #: Jobs this daemon unsuspended that the job index still shows suspended.
    admitted: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    #: Run uids counted into the breaker that the run index does not yet show as recorded.
    recorded: set[str] = dataclasses.field(default_factory=set)
    #: Held statuses written that the run index may not show yet: run name -> (reason, message).
    held: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    #: Jobs this daemon suspended for a drain that the job index still shows running.
    drained: set[str] = dataclasses.field(default_factory=set)
    last_status: dict[str, Any] | None = None

    @classmethod
    def for_target(cls, rt: runtime_mod.Runtime, body: Any) -> TargetReconciler:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        return cls(rt=rt, namespace=meta.get("namespace") or "", name=meta.get("name") or "",
                   breaker=breaker_mod.from_status(status.get("breaker")))

    async def reconcile(self, body: Any, runs: list[model.RunInfo], jobs: list[model.JobInfo]) -> dt.datetime | None:
        """One pass; returns when the daemon must run again even if nothing changes (the cooldown's end)."""
        rt = self.rt
        if not rt.autonomy_known:
            return None  # the autonomy watcher wakes every daemon once it has read the ConfigMap
        now = rt.clock()
        target = model.TargetInfo.of(body)
        meta = body.get("metadata") or {}
        uid = meta.get("uid") or ""
        autonomy = rt.autonomy
        target_ref = ref(k8s.TARGET_KIND, self.namespace, self.name, uid)
        runs_by_name = {r.name: r for r in runs}
        jobs_by_run = {j.run: j for j in jobs if j.run}
        # What the indexes show may lag our own writes: forget local memory only once they catch up.
        for job_name in list(self.admitted):
            job = next((j for j in jobs if j.name == job_name), None)
            if job is None or not job.state.suspended:
                del self.admitted[job_name]
        for job_name in list(self.drained):
            job = next((j for j in jobs if j.name == job_name), None)
            if job is None or job.state.suspended:
                self.drained.discard(job_name)
        for run in runs:
            if run.status.get("breakerRecorded"):
                self.recorded.discard(run.uid)
            held = self.held.get(run.name)
            if held and (run.reason, run.message) == held:
                del self.held[run.name]

        # 1. The breaker: cooldown, lost probes, finished Runs.
        b, transition = breaker_mod.advance(self.breaker, now)
        half_opened = transition.half_opened
        if b.state == k8s.BREAKER_HALF_OPEN and not b.probe_run:
            in_flight = next((j for j in jobs if j.probe and j.state.active and j.run), None)
            if in_flight is not None:
                b = breaker_mod.admit_probe(b, str(in_flight.run))
        if b.probe_run and (b.probe_run not in runs_by_name or runs_by_name[b.probe_run].phase == k8s.PHASE_CANCELLED):
            b = breaker_mod.probe_lost(b, b.probe_run)
        tripped = reset = False
        newly_recorded: list[model.RunInfo] = []
        # A finished Run is counted from its own status or, when its Job has finished but the Run's status has
        # not come back through the watch yet, from the Job: the slot a finished Job frees is never used by
        # admission (step 3) before its outcome is in the breaker.
        finished: list[tuple[str, model.RunInfo, bool, str | None]] = []
        for r in runs:
            if r.status.get("breakerRecorded") or r.uid in self.recorded or r.reason == k8s.REASON_JOB_CREATE_FAILED:
                continue
            if r.phase in (k8s.PHASE_SUCCEEDED, k8s.PHASE_FAILED):
                finished.append((r.status.get("completionTime") or "", r, r.phase == k8s.PHASE_SUCCEEDED, r.reason))
            elif not r.terminal and r.name in jobs_by_run and jobs_by_run[r.name].state.finished:
                state = jobs_by_run[r.name].state
                finished.append((timefmt.format_time(now) or "", r, state.succeeded, state.failure_reason))
        finished.sort(key=lambda item: (item[0], item[1].name))
        for _, run, succeeded, reason in finished:
            b, t = breaker_mod.record(
                b, succeeded=succeeded, run=run.name, reason=reason,
                now=now,
                failure_threshold=target.failure_threshold, cooldown_seconds=target.cooldown_seconds,
            )
            tripped = tripped or t.tripped
            reset = reset or t.reset
            newly_recorded.append(run)

        # 2. Emergency stop: suspend this Target's running Jobs.
        active_jobs = [j for j in jobs if j.state.active and j.name not in self.drained]
        if autonomy.draining:
            for job in active_jobs:
                await self._drain(job, runs_by_name.get(job.run or ""), now)
            active_jobs = []

        # 3. Admission, oldest first — after the outcomes just counted are persisted in Target.status.breaker, so
        # neither this replica nor a successor after a crash admits into a slot whose failure it has not counted.
        # When this pass admits nothing, the status write of step 4 carries the breaker instead (one write and
        # one watch event less per finished Run).
        active = len(active_jobs) + len([n for n in self.admitted if not any(j.name == n and j.state.active for j in jobs)])
        waiting = [r for r in runs if not r.terminal and r.name in jobs_by_run and jobs_by_run[r.name].state.suspended
                   and jobs_by_run[r.name].name not in self.admitted]
        gate = await self._budget_gate(target, autonomy, waiting, runs, now)
        decisions = admission.decide([admission.Candidate(r.name, r.created) for r in waiting], autonomy=autonomy,
                                     target=target.limits, breaker=b, active=active, now=now, budget=gate)
        if newly_recorded and any(decision.admit for decision in decisions):
            await self.rt.client.patch(kube.targets(self.namespace, self.name, "status"),
                                       {"status": {"breaker": breaker_mod.to_status(b)}})
        admitted_now = 0
        pending = 0
        waited_since: list[dt.datetime] = []
        for decision in decisions:
            run = runs_by_name[decision.run]
            if decision.admit:
                if not await self._admit(run, jobs_by_run[run.name], decision, now):
                    continue
                admitted_now += 1
                if decision.probe:
                    b = breaker_mod.admit_probe(b, run.name)
            else:
                pending += 1
                waited_since.append(run.created)
                await self._hold(run, decision, now)
        # Runs whose Job runs without our admission (adopted, created unsuspended): say so once.
        for job in active_jobs:
            external = runs_by_name.get(job.run or "")
            if (external is not None and external.phase in (None, k8s.PHASE_PENDING) and not job.admitted_by_operator
                    and job.name not in self.admitted):
                run = external
                await patch_run_status(self.rt, run.namespace, run.name, {
                    "jobName": job.name,
                    "conditions": conditions.set_condition(
                        run.status.get("conditions"), type_=k8s.CONDITION_ADMITTED, status=True, reason=k8s.REASON_ADMITTED,
                        message="the Job was created unsuspended: admitted by its creator", now=now,
                        generation=run.observed_generation)},
                    seen=run)
        # Runs still being set up (no Job yet) wait too.
        unbuilt = [r for r in runs if not r.terminal and r.name not in jobs_by_run and r.phase in (None, k8s.PHASE_PENDING)]
        pending += len(unbuilt)
        waited_since.extend(r.created for r in unbuilt)
        active += admitted_now

        # 3b. The no-progress watchdog over running Runs (operator/watchdog.py).
        stalled, watch_at = await self._watch(target, autonomy, runs, jobs_by_run, now)

        # 4. Status, Events, metrics.
        open_prs = target.limits.open_prs
        h = health.assess(limits=target.limits, autonomy=autonomy, breaker=b, active=active, pending=pending,
                          budget_hold=gate.hold if gate is not None else None)
        admitted_times = [t for t in (timefmt.parse_time(r.status.get("admittedAt")) for r in runs) if t]
        if admitted_now:
            admitted_times.append(now)
        previous = self.last_status or dict(body.get("status") or {})
        conds = conditions.set_condition(
            conditions.set_condition(previous.get("conditions"), type_=k8s.CONDITION_READY, status=h.ready,
                                     reason=h.reason, message=h.message, now=now, generation=target.generation),
            type_=k8s.CONDITION_ADMITTING, now=now, generation=target.generation,
            **_admitting(h, pending=pending, active=active, max_runs=target.limits.max_concurrent_runs))
        ready = conditions.get(conds, k8s.CONDITION_READY) or {}
        status: dict[str, Any] = {
            # Every Target reconcile reads the whole spec (limits, pause, budget, watchdog): each write earns it.
            "observedGeneration": target.generation,
            # Display fields, read off the Ready condition.
            "health": conditions.target_health(conds),
            "healthReason": ready.get("reason"),
            "message": ready.get("message"),
            "breaker": breaker_mod.to_status(b),
            "activeRuns": active,
            "pendingRuns": pending,
            "openPRs": open_prs,
            "lastRunTime": timefmt.format_time(max(admitted_times)) if admitted_times
            else previous.get("lastRunTime"),
            "conditions": conds,
        }
        if status != self.last_status:
            await self.rt.client.patch(kube.targets(self.namespace, self.name, "status"), {"status": status})
            changed_health = previous.get("health") != h.health or previous.get("healthReason") != h.reason
            self.last_status = status
            if changed_health:
                post = rt.kube_events.info if h.ready or h.health == k8s.HEALTH_PAUSED else rt.kube_events.warn
                post(target_ref, reason=h.reason, message=f"{h.health}: {h.message}")
            self.rt.emit(events_client.build(
                events.EventType.TARGET_STATUS,
                id_parts=(uid, str(sorted((k, str(v)) for k, v in status.items() if k != "conditions"))),
                time=now, target=self.name, subject=f"targets/{self.namespace}/{self.name}",
                data={"health": h.health, "health_reason": h.reason, "breaker_state": b.state,
                      "consecutive_failures": b.consecutive_failures, "trips": b.trips,
                      "cooldown_until": b.cooldown_until.isoformat() if b.cooldown_until else None,
                      "active_runs": active, "pending_runs": pending, "open_prs": open_prs,
                      "max_open_prs": target.limits.max_open_prs,
                      "max_concurrent_runs": target.limits.max_concurrent_runs,
                      "paused": target.limits.paused, "namespace": self.namespace, "message": h.message,
                      "budget_usd_per_hour": target.budget.per_hour if target.budget else None,
                      "budget_usd_per_day": target.budget.per_day if target.budget else None,
                      "budget_pacing": target.budget.pacing if target.budget else None},
            ))
        if half_opened:
            rt.kube_events.info(target_ref, reason="CircuitHalfOpen",
                      message="cooldown over: the next Run is admitted as the single probe")
        if tripped:
            rt.kube_events.warn(target_ref, reason=k8s.REASON_CIRCUIT_OPEN,
                      message=f"circuit breaker opened (trip {b.trips}) after {b.consecutive_failures} consecutive "
                              f"failures; last {b.last_failure_run}: {b.last_failure_reason}; cooldown until "
                              f"{timefmt.format_time(b.cooldown_until)}")
            self.rt.emit(events_client.build(
                events.EventType.TARGET_BREAKER_TRIPPED, id_parts=(uid, "tripped", str(b.trips)), time=now,
                target=self.name, subject=f"targets/{self.namespace}/{self.name}",
                data={"trips": b.trips, "consecutive_failures": b.consecutive_failures,
                      "cooldown_until": timefmt.format_time(b.cooldown_until), "reopened": b.reopened,
                      "last_failure_run": b.last_failure_run, "last_failure_reason": b.last_failure_reason},
            ))
        if reset:
            rt.kube_events.info(target_ref, reason="CircuitClosed", message="the half-open probe succeeded: breaker Closed")
            self.rt.emit(events_client.build(
                events.EventType.TARGET_BREAKER_RESET, id_parts=(uid, "reset", str(b.trips)), time=now,
                target=self.name, subject=f"targets/{self.namespace}/{self.name}", data={"trips": b.trips},
            ))
        self.breaker = b
        for run in newly_recorded:
            self.recorded.add(run.uid)
            await patch_run_status(self.rt, run.namespace, run.name, {"breakerRecorded": True})
        self.rt.view.targets[(self.namespace, self.name)] = metrics.TargetView(
            namespace=self.namespace, name=self.name, health=h.health, breaker_state=b.state, trips=b.trips,
            consecutive_failures=b.consecutive_failures, open_prs=open_prs, max_open_prs=target.limits.max_open_prs,
            max_concurrent_runs=target.limits.max_concurrent_runs, active=active, pending=pending,
            oldest_pending=min(waited_since, default=None), stalled=stalled)
        wakes = [t for t in (b.cooldown_until if b.state == k8s.BREAKER_OPEN else None,
                             gate.retry_at if gate is not None and pending else None, watch_at) if t is not None]
        return min(wakes) if wakes else None

    async def _watch(self, target: model.TargetInfo, autonomy: Any, runs: list[model.RunInfo],
                     jobs_by_run: dict[str, model.JobInfo], now: dt.datetime) -> tuple[int, dt.datetime | None]:
        """The watchdog's pass: how many running Runs are Stalled now, and when to look again."""
        rule = watchdog.policy(target.watchdog, autonomy.progress_timeout_seconds)
        running = [r for r in runs if r.phase == k8s.PHASE_RUNNING]
        if rule is None or not running:
            return 0, None
        recheck = now + dt.timedelta(seconds=min(WATCHDOG_RECHECK_SECONDS, rule.timeout_seconds))
        activity = await self.rt.activity.last_activity(self.namespace, self.name, now)
        if activity is None:  # blind (control_plane_client.ActivityClient): decide nothing, look again later
            return sum(1 for r in running if _stalled(r)), recheck
        count = 0
        wake: dt.datetime | None = None
        for run in running:
            last = activity.get(run.name)
            if last is None:  # the control plane does not have it running yet: nothing to judge by, look again
                wake = recheck if wake is None else min(wake, recheck)
                continue
            found = watchdog.verdict(last, now, rule.timeout_seconds)
            if found.stalled:
                count += 1
                if rule.stop:
                    await self._stop_stalled(run, jobs_by_run.get(run.name), found, rule, now)
                    continue
                if not _stalled(run):
                    await self._mark_stalled(run, found, rule, now)
                wake = recheck if wake is None else min(wake, recheck)  # to see progress come back
            else:
                if _stalled(run):
                    conds = conditions.set_condition(run.status.get("conditions"), type_=k8s.CONDITION_STALLED, status=False,
                                                     reason=k8s.REASON_PROGRESSING, message="events arrive again", now=now,
                                                     generation=run.observed_generation)
                    conds = conditions.active(conds, reason=k8s.REASON_RUNNING, message="events arrive again", now=now,
                                              generation=run.observed_generation)
                    await patch_run_status(self.rt, run.namespace, run.name, {"conditions": conds}, seen=run)
                if found.recheck_at is not None:
                    wake = found.recheck_at if wake is None else min(wake, found.recheck_at)
        return count, wake

    @staticmethod
    def _stall_message(found: watchdog.Verdict, rule: watchdog.Policy) -> str:
        return f"no event from the run for {int(found.idle_seconds)} s (progressTimeoutSeconds {rule.timeout_seconds})"

    async def _mark_stalled(self, run: model.RunInfo, found: watchdog.Verdict, rule: watchdog.Policy, now: dt.datetime) -> None:
        message = self._stall_message(found, rule)
        conds = conditions.set_condition(run.status.get("conditions"), type_=k8s.CONDITION_STALLED, status=True,
                                         reason=k8s.REASON_NO_PROGRESS, message=message, now=now,
                                         generation=run.observed_generation)
        conds = conditions.active(conds, reason=k8s.REASON_STALLED, message=message, now=now,
                                  generation=run.observed_generation)
        if await patch_run_status(self.rt, run.namespace, run.name, {"conditions": conds}, seen=run):
            self.rt.kube_events.warn(ref(k8s.RUN_KIND, run.namespace, run.name, run.uid), reason=k8s.REASON_NO_PROGRESS,
                                     message=f"Stalled: {message}")
            self._emit_stalled(run, found, rule, now, stopped=False)

    def _emit_stalled(self, run: model.RunInfo, found: watchdog.Verdict, rule: watchdog.Policy, now: dt.datetime, *,
                      stopped: bool) -> None:
        """``run.stalled`` to the control plane: the run record says stalled_since until the run speaks again."""
        since = timefmt.format_time(now - dt.timedelta(seconds=found.idle_seconds)) or ""
        self.rt.emit(events_client.build(
            events.EventType.RUN_STALLED, id_parts=(run.uid, "stalled", since), time=now, target=run.target or None,
            runid=run.name, subject=f"runs/{run.namespace}/{run.name}",
            data={"idle_seconds": round(found.idle_seconds, 3), "timeout_seconds": rule.timeout_seconds, "stopped": stopped}))

    async def _stop_stalled(self, run: model.RunInfo, job: model.JobInfo | None, found: watchdog.Verdict,
                            rule: watchdog.Policy, now: dt.datetime) -> None:
        """Fail the Run (NoProgress, counted by the breaker) and suspend its Job, which stops its pods."""
        message = self._stall_message(found, rule) + ": stopped by the watchdog (spec.watchdog.stopStalledRuns)"
        conds = run.status.get("conditions")
        for type_, value in ((k8s.CONDITION_STALLED, True), (k8s.CONDITION_RUNNING, False), (k8s.CONDITION_SUCCEEDED, False)):
            conds = conditions.set_condition(conds, type_=type_, status=value, reason=k8s.REASON_NO_PROGRESS, message=message,
                                             now=now, generation=run.observed_generation)
        started = timefmt.parse_time(run.status.get("startTime"))
        duration = round((now - started).total_seconds(), 3) if started else None
        status: dict[str, Any] = {"errorSummary": message, "completionTime": timefmt.format_time(now), "conditions": conds}
        if duration is not None:
            status["durationSeconds"] = max(0, int(duration))  # whole seconds, as the Job mirror writes it
        if not await patch_run_status(self.rt, run.namespace, run.name, status, seen=run):
            return
        if job is not None:
            await self.rt.client.patch(kube.jobs(job.namespace, job.name), {
                "metadata": {"annotations": {k8s.ANNOTATION_STOPPED: k8s.REASON_NO_PROGRESS}}, "spec": {"suspend": True}})
        self.rt.kube_events.warn(ref(k8s.RUN_KIND, run.namespace, run.name, run.uid), reason=k8s.REASON_NO_PROGRESS,
                                 message=message)
        self._emit_stalled(run, found, rule, now, stopped=True)
        self.rt.emit(events_client.build(
            events.EventType.RUN_FAILED, id_parts=(run.uid, "failed"), time=now, target=run.target or None,
            runid=run.name, subject=f"runs/{run.namespace}/{run.name}",
            data={"error_type": k8s.REASON_NO_PROGRESS, "message": message, "duration_seconds": duration}))

    async def _budget_gate(self, target: model.TargetInfo, autonomy: Any, waiting: list[model.RunInfo],
                           runs: list[model.RunInfo], now: dt.datetime) -> budget_mod.Gate | None:
        """The budget verdict, asked of the control plane only when a Run waits and a budget applies."""
        glob = budget_mod.Limits(per_hour=autonomy.budget_usd_per_hour, per_day=autonomy.budget_usd_per_day)
        if not waiting or not autonomy.enabled or (target.budget is None and not glob.any):
            return None
        spend, error = await self.rt.budgets.fetch(self.name, target.budget, glob if glob.any else None, now, self.namespace)
        admitted_times = [t for t in (timefmt.parse_time(r.status.get("admittedAt")) for r in runs) if t]
        admitted_times.extend(self.admitted.values())
        return budget_mod.gate(spend, target=target.budget, glob=glob, now=now, error=error,
                               fail_open=self.rt.settings.budget_fail_open,
                               retry_unknown=dt.timedelta(seconds=self.rt.settings.budget_cache_seconds),
                               last_admitted=max(admitted_times) if admitted_times else None)

    async def _admit(self, run: model.RunInfo, job: model.JobInfo, decision: admission.Decision, now: dt.datetime) -> bool:
        """Admit the Run and unsuspend its Job; False (the Job stays suspended) when the Run is gone or finished."""
        stamp = timefmt.format_time(now)
        # Run status first: if we crash before unsuspending, the Job is still suspended and simply admitted again.
        if not await patch_run_status(self.rt, run.namespace, run.name, {
            "jobName": job.name,
            "admittedAt": stamp,
            "probe": decision.probe,
            "observedGeneration": run.generation,
            "conditions": conditions.active(
                conditions.set_condition(run.status.get("conditions"), type_=k8s.CONDITION_ADMITTED, status=True,
                                         reason=decision.reason, message=decision.message, now=now, generation=run.generation),
                reason=k8s.REASON_PENDING, message="admitted; its Job has not started yet", now=now, generation=run.generation),
        }, job_suspended=True, seen=run):
            return False
        if self.rt.signing_key is not None:  # the credential exists before any pod of the Job can start
            await run_credentials.issue(
                self.rt.client, self.rt.signing_key, namespace=run.namespace, run_name=run.name, run_uid=run.uid,
                target=run.target, ttl=run_credentials.ttl_seconds(self.rt.settings.run_credential_ttl_seconds,
                                                                   run.active_deadline_seconds))
        await self.rt.client.patch(kube.jobs(job.namespace, job.name), {
            "metadata": {"annotations": {k8s.ANNOTATION_ADMITTED_AT: stamp,
                                         k8s.ANNOTATION_PROBE: "true" if decision.probe else None,
                                         k8s.ANNOTATION_DRAINED: None}},
            "spec": {"suspend": False},
        })
        self.admitted[job.name] = now
        self.held.pop(run.name, None)
        self.rt.kube_events.info(ref(k8s.RUN_KIND, run.namespace, run.name, run.uid), reason=decision.reason,
                  message=f"Job {job.name} unsuspended: {decision.message}")
        self.rt.emit(events_client.build(
            events.EventType.RUN_ADMITTED, id_parts=(run.uid, "admitted", stamp or ""), time=now,
            target=run.target, runid=run.name, subject=f"runs/{run.namespace}/{run.name}",
            data={"job": job.name, "probe": decision.probe, "namespace": run.namespace},
        ))
        return True

    async def _hold(self, run: model.RunInfo, decision: admission.Decision, now: dt.datetime) -> None:
        current = self.held.get(run.name) or (run.reason, run.message)
        if (run.phase == k8s.PHASE_PENDING and current == (decision.reason, decision.message)
                and run.observed_generation == run.generation):
            return  # said already, about this spec
        if current[0] == k8s.REASON_DRAINED and not self.rt.autonomy.enabled:
            return  # keep saying why it stopped until autonomy comes back
        if await patch_run_status(self.rt, run.namespace, run.name, held_status(run, decision.reason, decision.message, now),
                                  job_suspended=True, seen=run):
            if current[0] != decision.reason:
                self.rt.kube_events.info(ref(k8s.RUN_KIND, run.namespace, run.name, run.uid), reason=decision.reason,
                          message=f"held: {decision.message}")
            self.held[run.name] = (decision.reason, decision.message)

    async def _drain(self, job: model.JobInfo, run: model.RunInfo | None, now: dt.datetime) -> None:
        await self.rt.client.patch(kube.jobs(job.namespace, job.name), {
            "metadata": {"annotations": {k8s.ANNOTATION_DRAINED: "true"}}, "spec": {"suspend": True}})
        self.admitted.pop(job.name, None)
        self.drained.add(job.name)
        message = f"emergency stop (autonomy mode drain): Job {job.name} suspended"
        self.rt.kube_events.warn(ref("Job", job.namespace, job.name), reason=k8s.REASON_DRAINED, message=message)
        if run is not None:
            await patch_run_status(self.rt, run.namespace, run.name, held_status(run, k8s.REASON_DRAINED, message, now),
                                   job_suspended=True, seen=run)
            self.rt.emit(events_client.build(
                events.EventType.RUN_REQUEUED, id_parts=(run.uid, "requeued", timefmt.format_time(now) or ""), time=now,
                target=run.target or None, runid=run.name, subject=f"runs/{run.namespace}/{run.name}",
                data={"reason": k8s.REASON_DRAINED}))
            self.held[run.name] = (k8s.REASON_DRAINED, message)
            self.rt.kube_events.warn(ref(k8s.RUN_KIND, run.namespace, run.name, run.uid), reason=k8s.REASON_DRAINED, message=message)
