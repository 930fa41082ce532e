"""Between a Run and its batch/v1 Job: the Job built from a Run, and the Run status read from a Job.

The Job is created suspended (admission unsuspends it), owned by the Run (deleting the Run deletes it),
labelled ``outrider.dev/run`` and ``outrider.dev/target``, and its containers get ``OUTRIDER_RUN_ID`` and
``OUTRIDER_TARGET`` (and ``OUTRIDER_RUN_NAMESPACE``) so the agent's own events name the same run, target and
namespace as the operator's. The reverse
direction maps the Job's status to the Run's phase, times, reason and error summary. Pure: dicts in, dicts out.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from typing import Any

from outrider.common import credentials, k8s, timefmt
from outrider.operator import run_credentials

#: The longest termination message kept as errorSummary (Kubernetes caps the message at 4096 bytes anyway).
ERROR_SUMMARY_MAX = 1024


def job_for_run(run: dict[str, Any], *, credential: bool = False) -> dict[str, Any]:
    """The suspended Job for a Run with ``spec.template``; with ``credential``, its containers mount the run's
    credential Secret (``run_credentials``), which the operator creates when it admits the Run."""
    meta = run["metadata"]
    spec = run.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    tmeta = template.get("metadata") or {}
    job_spec = template.get("spec") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[k8s.LABEL_RUN] = meta["name"]
    labels[k8s.LABEL_TARGET] = spec["target"]
    job_spec["suspend"] = True
    if spec.get("activeDeadlineSeconds") is not None:
        job_spec["activeDeadlineSeconds"] = spec["activeDeadlineSeconds"]
    pod_template = job_spec.setdefault("template", {})
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), k8s.LABEL_RUN: meta["name"], k8s.LABEL_TARGET: spec["target"]}
    pod_spec = pod_template.setdefault("spec", {})
    for container in pod_spec.get("containers") or []:
        env = container.setdefault("env", [])
        present = {item.get("name") for item in env}
        for name, value in (("OUTRIDER_RUN_ID", meta["name"]), ("OUTRIDER_TARGET", spec["target"]),
                            (credentials.RUN_NAMESPACE_ENV, meta.get("namespace") or "default")):
            if name not in present:
                env.append({"name": name, "value": value})
    if credential:
        run_credentials.mount(pod_spec, meta["name"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": dict(tmeta.get("annotations") or {}),
            "ownerReferences": [{
                "apiVersion": k8s.API_VERSION,
                "kind": k8s.RUN_KIND,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": job_spec,
    }


def run_for_job(job: dict[str, Any]) -> dict[str, Any]:
    """The Run that mirrors an adopted Job (one labelled ``outrider.dev/target`` but created by someone else)."""
    meta = job["metadata"]
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    spec: dict[str, Any] = {"target": labels[k8s.LABEL_TARGET], "jobName": meta["name"]}
    for key, field in (("outrider.dev/agent", "agent"), ("outrider.dev/model", "model")):
        if annotations.get(key):
            spec[field] = annotations[key]
    if annotations.get("outrider.dev/task-id") or annotations.get("outrider.dev/task-title"):
        spec["task"] = {k: v for k, v in (("id", annotations.get("outrider.dev/task-id")),
                                          ("title", annotations.get("outrider.dev/task-title"))) if v}
    return {
        "apiVersion": k8s.API_VERSION,
        "kind": k8s.RUN_KIND,
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "labels": {k8s.LABEL_TARGET: labels[k8s.LABEL_TARGET], k8s.LABEL_ADOPTED: "true"},
        },
        "spec": spec,
    }


@dataclasses.dataclass(frozen=True)
class JobState:
    """What admission and the breaker need from a Job."""

    suspended: bool
    finished: bool
    succeeded: bool
    failed: bool
    failure_reason: str | None = None  # the Failed condition's reason (what the Run's status.reason becomes)

    @property
    def active(self) -> bool:
        """Admitted and unfinished: counts against maxConcurrentRuns."""
        return not self.suspended and not self.finished


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    cond: dict[str, Any]
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def state(job: dict[str, Any]) -> JobState:
    status = job.get("status") or {}
    complete = _condition(job, "Complete") is not None or (
        bool(status.get("succeeded")) and bool(status.get("completionTime")))
    failed = _condition(job, "Failed") is not None
    return JobState(
        suspended=bool((job.get("spec") or {}).get("suspend")),
        finished=complete or failed,
        succeeded=complete and not failed,
        failed=failed,
        failure_reason=((_condition(job, "Failed") or {}).get("reason") or k8s.REASON_JOB_FAILED) if failed else None,
    )


def run_status(job: dict[str, Any], termination_message: str | None = None) -> dict[str, Any]:
    """The Run status fields that follow from the Job (phase only once admitted; held phases are admission's)."""
    status = job.get("status") or {}
    st = state(job)
    out: dict[str, Any] = {"jobName": job["metadata"]["name"]}
    start = timefmt.parse_time(status.get("startTime"))
    if start is not None:
        out["startTime"] = timefmt.format_time(start)
    if st.failed:
        cond = _condition(job, "Failed") or {}
        end = timefmt.parse_time(cond.get("lastTransitionTime")) or timefmt.parse_time(status.get("completionTime"))
        out.update(phase=k8s.PHASE_FAILED, reason=cond.get("reason") or k8s.REASON_JOB_FAILED,
                   message=cond.get("message") or "the Job failed")
    elif st.succeeded:
        cond = _condition(job, "Complete") or {}
        end = timefmt.parse_time(status.get("completionTime")) or timefmt.parse_time(cond.get("lastTransitionTime"))
        out.update(phase=k8s.PHASE_SUCCEEDED, reason=k8s.REASON_COMPLETED, message="the Job completed")
    else:
        end = None
        if not st.suspended and (status.get("active") or start is not None):
            out.update(phase=k8s.PHASE_RUNNING, reason=k8s.PHASE_RUNNING, message=f"{status.get('active') or 0} pod(s) active")
    if end is not None:
        out["completionTime"] = timefmt.format_time(end)
        if start is not None:
            out["durationSeconds"] = max(0, int((end - start).total_seconds()))
    if termination_message:
        usage = usage_from_message(termination_message)
        if usage is not None:
            out["usage"] = usage
        elif st.failed:
            out["errorSummary"] = summarize(termination_message)
    return out


def summarize(message: str) -> str:
    text = message.strip()
    return text if len(text) <= ERROR_SUMMARY_MAX else text[: ERROR_SUMMARY_MAX - 1] + "…"


def usage_from_message(message: str) -> dict[str, Any] | None:
    """LLM usage when the agent wrote a JSON termination message with usage keys; None otherwise."""
    try:
        data = json.loads(message)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    data = data.get("usage", data) if isinstance(data.get("usage", data), dict) else data
    usage: dict[str, Any] = {}
    for key in ("inputTokens", "outputTokens", "totalTokens"):
        if isinstance(data.get(key), int) and not isinstance(data.get(key), bool) and data[key] >= 0:
            usage[key] = data[key]
    if isinstance(data.get("costUSD"), int | float) and not isinstance(data.get("costUSD"), bool) and data["costUSD"] >= 0:
        usage["costUSD"] = float(data["costUSD"])
    if not usage:
        return None
    if "totalTokens" not in usage and "inputTokens" in usage and "outputTokens" in usage:
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
    return usage


def termination_message(pod: dict[str, Any]) -> str | None:
    """The first terminated container's message in a pod, or None."""
    status = pod.get("status") or {}
    for container in (status.get("containerStatuses") or []):
        terminated = ((container.get("state") or {}).get("terminated")
                      or (container.get("lastState") or {}).get("terminated") or {})
        if terminated.get("message"):
            return str(terminated["message"])
    return None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
