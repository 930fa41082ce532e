"""The demo's world: Targets, a stream of Runs, a stand-in Job controller, and PRs being merged.

The driver talks to the Kubernetes API emulator over HTTP like any client. It creates three Targets with
different fates — ``docs-site`` mostly succeeds, ``payments-api`` mostly fails (its circuit breaker trips,
cools down, probes), ``web-frontend`` opens a PR per success until it reaches its open-PR limit — and keeps a
few Runs waiting per Target. Where a cluster's Job controller would start the pod of an admitted (unsuspended)
Job, the driver starts a demo :class:`~outrider.demo.worker.Worker` and, when it is done, writes the Job's
status (succeeded or failed) — the operator does the rest exactly as in a cluster. Open PRs are reported on
the Target as the ``outrider.dev/open-prs`` annotation (what a Git integration would maintain), and one is
"merged" every ``merge_every`` seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from outrider import client
from outrider.common import k8s
from outrider.demo import worker

log = logging.getLogger("outrider.demo")


@dataclasses.dataclass(frozen=True)
class TargetPlan:
    name: str
    description: str
    success_rate: float
    opens_prs: bool
    spec: dict[str, Any]


TARGETS = (
    TargetPlan("docs-site", "Documentation site: small, safe changes.", 0.9, False,
               {"maxConcurrentRuns": 2, "maxOpenPRs": 5, "circuitBreaker": {"failureThreshold": 3, "cooldownSeconds": 60}}),
    TargetPlan("payments-api", "Payments service: the agent keeps breaking its tests.", 0.15, False,
               {"maxConcurrentRuns": 1, "maxOpenPRs": 2, "circuitBreaker": {"failureThreshold": 2, "cooldownSeconds": 45}}),
    TargetPlan("web-frontend", "Web frontend: every success opens a pull request.", 0.85, True,
               {"maxConcurrentRuns": 1, "maxOpenPRs": 2, "circuitBreaker": {"failureThreshold": 3, "cooldownSeconds": 60}}),
)


def now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Driver:
    """Runs in its own thread until :meth:`stop`; every step is plain HTTP to the emulator and the control plane."""

    def __init__(self, kube_url: str, api_url: str, token: str, namespace: str, *, run_every: float = 3.0,
                 run_seconds: tuple[float, float] = (4.0, 9.0), merge_every: float = 40.0, pending_per_target: int = 2,
                 seed: int | None = None) -> None:
        self.namespace = namespace
        self.kube = httpx.Client(base_url=kube_url, timeout=10)
        self.api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        #: The demo workers' event emitter (the worker SDK), shared by all of them.
        self.reporting = client.Client(api_url, token, source="/demo/workers", namespace=namespace, flush_interval=0.25)
        self.run_every, self.run_seconds, self.merge_every = run_every, run_seconds, merge_every
        self.pending_per_target = pending_per_target
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # Jobs a worker is working on
        self._workers: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        self._next_pr = itertools.count(101)
        self._open_prs: dict[str, list[tuple[int, str]]] = {t.name: [] for t in TARGETS if t.opens_prs}
        self._thread = threading.Thread(target=self._main, name="demo-driver", daemon=True)
        self.errors = 0

    # --- HTTP helpers -------------------------------------------------------------------------------------
    def _path(self, kind: str, name: str = "") -> str:
        base = {
            "runs": f"/apis/{k8s.GROUP}/{k8s.VERSION}/namespaces/{self.namespace}/{k8s.RUN_PLURAL}",
            "targets": f"/apis/{k8s.GROUP}/{k8s.VERSION}/namespaces/{self.namespace}/{k8s.TARGET_PLURAL}",
            "jobs": f"/apis/batch/v1/namespaces/{self.namespace}/jobs",
            "configmaps": f"/api/v1/namespaces/{self.namespace}/configmaps",
        }[kind]
        return f"{base}/{name}" if name else base

    def _patch(self, path: str, body: dict[str, Any]) -> None:
        self.kube.patch(path, content=json.dumps(body),
                        headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()

    def _items(self, kind: str) -> list[dict[str, Any]]:
        response = self.kube.get(self._path(kind))
        response.raise_for_status()
        return list(response.json().get("items") or [])

    # --- set-up -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """The autonomy ConfigMap (enabled) and the three Targets."""
        if self.kube.get(self._path("configmaps", k8s.AUTONOMY_CONFIGMAP_DEFAULT)).status_code == 404:
            self.kube.post(self._path("configmaps"), json={
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": k8s.AUTONOMY_CONFIGMAP_DEFAULT, "namespace": self.namespace},
                "data": {k8s.AUTONOMY_KEY_ENABLED: "true", k8s.AUTONOMY_KEY_MODE: k8s.AUTONOMY_MODE_HOLD,
                         k8s.AUTONOMY_KEY_REASON: "demo started"}}).raise_for_status()
        for plan in TARGETS:
            metadata: dict[str, Any] = {"name": plan.name, "namespace": self.namespace}
            if plan.opens_prs:
                metadata["annotations"] = {k8s.ANNOTATION_OPEN_PRS: "0"}
            self.kube.post(self._path("targets"), json={
                "apiVersion": k8s.API_VERSION, "kind": k8s.TARGET_KIND, "metadata": metadata,
                "spec": {"description": plan.description, **plan.spec}}).raise_for_status()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        for thread in self._workers:  # workers notice the stop within half a second
            thread.join(5)
        self.kube.close()
        self.reporting.close(timeout=5)
        self.api.close()

    # --- the loop -----------------------------------------------------------------------------------------
    def _main(self) -> None:
        next_run = next_merge = time.monotonic()
        next_merge += self.merge_every
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_run:
                    self._create_runs()
                    next_run = now + self.run_every
                if now >= next_merge:
                    self._merge_one()
                    next_merge = now + self.merge_every
                self._start_admitted_jobs()
            except httpx.HTTPError as exc:
                self.errors += 1
                log.warning("demo driver: %s", exc)
            self._stop.wait(0.3)

    def _create_runs(self) -> None:
        """Keep up to ``pending_per_target`` Runs waiting per Target (a scheduler's steady backlog)."""
        waiting: dict[str, int] = {plan.name: 0 for plan in TARGETS}
        for run in self._items("runs"):
            phase = (run.get("status") or {}).get("phase") or k8s.PHASE_PENDING
            target = (run.get("spec") or {}).get("target")
            if target in waiting and phase in (k8s.PHASE_PENDING, k8s.PHASE_ADMITTED):
                waiting[target] += 1
        plan = self.rng.choice([p for p in TARGETS if waiting[p.name] < self.pending_per_target] or [None])
        if plan is None:
            return
        name = f"{plan.name}-{next(self._numbers):04d}"
        self.kube.post(self._path("runs"), json={
            "apiVersion": k8s.API_VERSION, "kind": k8s.RUN_KIND,
            "metadata": {"name": name, "namespace": self.namespace, "labels": {k8s.LABEL_TARGET: plan.name}},
            "spec": {"target": plan.name, "agent": "demo-agent", "model": "claude-sonnet-4",
                     "task": {"id": name, "title": f"Demo task for {plan.name}"},
                     "template": {"spec": {"backoffLimit": 0, "template": {"spec": {
                         "restartPolicy": "Never", "containers": [{"name": "agent", "image": "outrider/demo-agent:1"}]}}}}},
        }).raise_for_status()

    def _start_admitted_jobs(self) -> None:
        for job in self._items("jobs"):
            name = job["metadata"]["name"]
            status = job.get("status") or {}
            if (job.get("spec") or {}).get("suspend") or status.get("succeeded") or status.get("failed"):
                continue
            with self._lock:
                if name in self._busy:
                    continue
                self._busy.add(name)
            target = ((job["metadata"].get("labels") or {}).get(k8s.LABEL_TARGET)) or ""
            if not status.get("startTime"):
                self._patch(self._path("jobs", name) + "/status", {"status": {"active": 1, "startTime": now_text()}})
            thread = threading.Thread(target=self._run_job, args=(name, target), name=f"demo-worker-{name}", daemon=True)
            self._workers = [t for t in self._workers if t.is_alive()] + [thread]
            thread.start()

    def _suspended(self, job: str) -> bool:
        response = self.kube.get(self._path("jobs", job))
        return response.status_code != 200 or bool((response.json().get("spec") or {}).get("suspend"))

    def _run_job(self, job: str, target: str) -> None:
        plan = next((p for p in TARGETS if p.name == target), None)
        try:
            if plan is None:
                return
            stop = threading.Event()
            watcher = threading.Thread(target=self._watch_suspend, args=(job, stop), daemon=True)
            watcher.start()
            agent = worker.Worker(self.reporting.run(job, target), succeed=self.rng.random() < plan.success_rate,
                                  opens_pr=plan.opens_prs, seconds=self.rng.uniform(*self.run_seconds), stop=stop,
                                  rng=random.Random(self.rng.random()))
            outcome = agent.work(next(self._next_pr))
            self.reporting.flush(timeout=5)  # like a real worker before it exits: its events land before the Job ends
            stop.set()
            if outcome is None or self._stop.is_set():
                return  # drained (suspended) or the demo is stopping: the Job stays as it is
            stamp = now_text()
            if outcome:
                self._patch(self._path("jobs", job) + "/status", {"status": {
                    "active": 0, "succeeded": 1, "completionTime": stamp,
                    "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": stamp}]}})
                if agent.pr_number is not None:
                    with self._lock:
                        self._open_prs[target].append((agent.pr_number, job))
                    self._report_open_prs(target)
            else:
                self._patch(self._path("jobs", job) + "/status", {"status": {
                    "active": 0, "failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                              "reason": "BackoffLimitExceeded",
                                                              "message": "Job has reached the specified backoff limit",
                                                              "lastTransitionTime": stamp}]}})
        except httpx.HTTPError as exc:
            self.errors += 1
            log.warning("demo worker %s: %s", job, exc)
        finally:
            with self._lock:
                self._busy.discard(job)

    def _watch_suspend(self, job: str, stop: threading.Event) -> None:
        """Interrupt the worker when the operator suspends its Job (emergency stop) or the demo ends."""
        while not stop.is_set():
            if self._stop.is_set():
                stop.set()
                return
            try:
                if self._suspended(job):
                    stop.set()
                    return
            except httpx.HTTPError:
                pass
            stop.wait(0.5)

    def _report_open_prs(self, target: str) -> None:
        with self._lock:
            count = len(self._open_prs[target])
        self._patch(self._path("targets", target), {"metadata": {"annotations": {k8s.ANNOTATION_OPEN_PRS: str(count)}}})

    def _merge_one(self) -> None:
        """A reviewer merges the oldest open PR of each PR-opening Target."""
        for target, prs in self._open_prs.items():
            with self._lock:
                if not prs:
                    continue
                number, run = prs.pop(0)
            event = {"specversion": "1.0", "id": f"merge-{target}-{number}", "source": "/demo/git", "type": "pr.merged",
                     "time": datetime.now(UTC).isoformat(), "target": target, "runid": run,
                     "data": {"number": number, "url": f"https://git.example.test/{target}/pull/{number}"}}
            self.api.post("/v1/events", json=event, headers={"Content-Type": "application/cloudevents+json"})
            self._report_open_prs(target)
